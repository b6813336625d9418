"""Compiled reading of SFT JSONL lines of the common shapes, straight into a batch's layout.

Parsing a line into Python objects, converting them (`converters.to_sft`) and laying the
record out as code points again (`batchtext.batch_texts`) cost about 20 us per record; this
does the same for a whole chunk in one compiled pass. It is an accelerator, not a second
definition: it takes a line only when it can give exactly the record that the Python path
would (`orjson.loads`, then `to_sft` with `clean_text`), and hands every other line to that
path (`SLOW`). Tests compare the two on every line of the shared data and on generated ones.

A line is taken (`FAST`) when
  - it is a JSON object that orjson accepts (validated here: strings, UTF-8, escapes,
    surrogate pairs, numbers without exponent, nesting up to 64 levels), with no key that the
    SFT alias table knows twice;
  - the converter's shape holds: `messages` or `conversations` as a list of {role, content} /
    {from, value} objects with string values and a known role, or the single-turn aliases
    (prompt, response, optional input and system) as strings, without `history`;
  - every text the record takes needs no cleaning beyond stripping (no CR, control,
    zero-width character or BOM: `clean_text` would rewrite those), is not empty after
    stripping (the system text may be), and the turns alternate as `_check_order` wants.
Anything else (a wrong type, an unknown role, a field that only the Python path explains in a
rejection) is `SLOW`: the Python path then keeps or rejects it as before.

The loop and its helpers are compiled without numba's reference counting (`_nrt=False`, see
`kernels`): an atomic increment and decrement of every array argument on each call of
`_string` and the others took 15% of the scan. `scan_sft_lines` only allocates. Together with
the vectorised `kernels.copy_slice` the scan went from 650 to 850 MB/s on the benchmark corpus.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from k12tune.data.aliases import ROLE_ALIASES
from k12tune.data.kernels import copy_slice
from k12tune.records import ROLES

# Line kinds.
SKIP, BLANK, FAST, SLOW = 0, 1, 2, 3
# The alias-table fields an SFT record reads, in this order (`name_rank` columns).
FIELDS: tuple[str, ...] = ("messages", "conversations", "system", "prompt", "input", "response", "history")
_MESSAGES, _CONVERSATIONS, _SYSTEM, _PROMPT, _INPUT, _RESPONSE, _HISTORY = range(len(FIELDS))
# What a known key's value was.
_ABSENT, _NULL, _STRING, _TURNS, _OTHER = range(5)
# `_string`'s flags. \r \b \f decode to characters that need cleaning, so they are _DIRTY.
_DIRTY, _ESCAPED = 1, 2
_SYSTEM_ROLE, _USER_ROLE, _ASSISTANT_ROLE = (ROLES.index(r) for r in ("system", "user", "assistant"))
_MAX_DEPTH = 64  # containers inside a skipped value (orjson allows 1024)
_MAX_NUMBER = 64  # longer number tokens go to the Python path (orjson's own range checks)
_TURN_KEYS = ("role", "content", "from", "value")
# JSON's literals, as arrays: numba freezes a global array into the machine code, which its
# cache can hold (a bytes constant would be a pointer into the compiling process).
_TRUE, _FALSE, _NULL_WORD = (np.frombuffer(w, dtype=np.uint8).copy() for w in (b"true", b"false", b"null"))


@njit(cache=True, nogil=True, inline="always")
def _ws(d: np.ndarray, i: int, end: int) -> int:
    while i < end:
        b = d[i]
        if b != 0x20 and b != 0x0A and b != 0x0D and b != 0x09:
            break
        i += 1
    return i


@njit(cache=True, nogil=True, inline="always")
def _hex4(d: np.ndarray, i: int, end: int) -> int:
    if i + 4 > end:
        return -1
    value = 0
    for j in range(i, i + 4):
        b = np.int64(d[j])
        if 0x30 <= b <= 0x39:
            h = b - 0x30
        elif 0x61 <= b <= 0x66:
            h = b - 0x57
        elif 0x41 <= b <= 0x46:
            h = b - 0x37
        else:
            return -1
        value = value * 16 + h
    return value


@njit(cache=True, nogil=True, inline="always")
def _needs_cleaning(c: int) -> bool:
    """Whether `clean_text` removes or rewrites code point c (CR, C0/C1 controls except TAB
    and LF, U+200B..U+200D, U+2060, U+FEFF)."""
    if c < 0x20:
        return c != 0x09 and c != 0x0A
    if c < 0x7F:
        return False
    return c <= 0x9F or 0x200B <= c <= 0x200D or c == 0x2060 or c == 0xFEFF


@intrinsic
def _load8(typingctx, data, i):
    """The 8 bytes `data[i:i+8]` as one unsigned integer (an unaligned load)."""
    sig = types.uint64(data, types.int64)

    def codegen(context, builder, signature, args):
        array, index = args
        base = context.make_array(signature.args[0])(context, builder, array).data
        word = builder.bitcast(builder.gep(base, [index]), ir.IntType(64).as_pointer())
        return builder.load(word, align=1)

    return sig, codegen


@intrinsic
def _trailing_zeros(typingctx, w):
    """The number of trailing zero bits of w (64 for 0)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 0))

    return sig, codegen


# Byte k of a loaded word is its bits 8k..8k+7 on a little-endian machine only; elsewhere the
# 8-byte path is compiled out.
_LITTLE_ENDIAN = sys.byteorder == "little"
_ONES = np.uint64(0x0101010101010101)
_HIGHS = np.uint64(0x8080808080808080)
_QUOTES = np.uint64(0x2222222222222222)
_BACKSLASHES = np.uint64(0x5C5C5C5C5C5C5C5C)
_DELS = np.uint64(0x7F7F7F7F7F7F7F7F)
_SPACES = np.uint64(0x2020202020202020)


@njit(cache=True, nogil=True, inline="always")
def _not_plain(w: np.uint64) -> np.uint64:
    """The high bit of every byte of w that is not printable ASCII other than quote, backslash
    and DEL (such bytes need `_string`'s byte-by-byte path), exact up to the first of them:
    the lowest set bit is always right. The word tests are the bit hacks `haszero(w ^ q)` and
    `hasless(w, 0x20)` (a borrow only ever carries into later bytes), plus w's own high bits."""
    q = w ^ _QUOTES
    b = w ^ _BACKSLASHES
    d = w ^ _DELS
    bad = ((q - _ONES) & ~q) | ((b - _ONES) & ~b) | ((d - _ONES) & ~d) | ((w - _SPACES) & ~w) | w
    return bad & _HIGHS


@njit(cache=True, nogil=True, _nrt=False)
def _string(d: np.ndarray, i: int, end: int, out: np.ndarray, at: int) -> tuple[int, int, int]:
    """Decode the JSON string whose opening quote is d[i] into out[at:]. Returns the index
    after its closing quote (-1 when it is not a string orjson accepts), the end of the
    decoded code points in `out`, and flags: `_DIRTY` when any of them needs cleaning,
    `_ESCAPED` when orjson would write the string otherwise than its bytes here are (an
    escape other than \\" \\\\ \\n \\t).

    Two runs skip most of the byte-by-byte checks: after a printable ASCII byte, 8 bytes at a
    time while they are printable ASCII other than quote, backslash and DEL (`_not_plain`); and
    after a 3-byte UTF-8 form, the 3-byte forms that follow (CJK and full-width punctuation),
    without looking for quotes or escapes, which are ASCII. Scan of 3 MB chunks of Chinese
    prompt/response records: 875 -> 1055 MB/s; English 790 -> 1055 MB/s; the benchmark corpus
    810 -> 960 MB/s."""
    i += 1
    flags = 0
    while i < end:
        b = np.int64(d[i])
        if b == 0x22:
            return i + 1, at, flags
        if b == 0x5C:
            if i + 1 >= end:
                return -1, at, flags
            e = np.int64(d[i + 1])
            i += 2
            if e == 0x22 or e == 0x5C:
                c = e
            elif e == 0x6E:
                c = 0x0A
            elif e == 0x74:
                c = 0x09
            elif e == 0x2F:
                c = e
                flags |= _ESCAPED
            elif e == 0x72:
                c = 0x0D
            elif e == 0x62:
                c = 0x08
            elif e == 0x66:
                c = 0x0C
            elif e == 0x75:
                flags |= _ESCAPED
                c = _hex4(d, i, end)
                i += 4
                if c < 0 or 0xDC00 <= c <= 0xDFFF:
                    return -1, at, flags
                if 0xD800 <= c <= 0xDBFF:  # must be followed by an escaped low surrogate
                    if not (i + 1 < end and d[i] == 0x5C and d[i + 1] == 0x75):
                        return -1, at, flags
                    low = _hex4(d, i + 2, end)
                    if low < 0xDC00 or low > 0xDFFF:
                        return -1, at, flags
                    c = 0x10000 + ((c - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
            else:
                return -1, at, flags
        elif b < 0x80:
            if b < 0x20:  # raw control characters are not allowed in JSON strings
                return -1, at, flags
            out[at] = b
            at += 1
            i += 1
            if b == 0x7F:
                flags |= _DIRTY
            while _LITTLE_ENDIAN and i + 8 <= end:
                w = _load8(d, i)
                bad = _not_plain(w)
                n = 8 if bad == 0 else np.int64(_trailing_zeros(bad) >> np.uint64(3))
                for k in range(n):
                    out[at + k] = (w >> np.uint64(8 * k)) & np.uint64(0xFF)
                at += n
                i += n
                if n < 8:
                    break
            continue
        # UTF-8: lead byte, continuation bytes 10xxxxxx; no overlong form, surrogate or
        # code point above U+10FFFF (orjson refuses those lines).
        elif 0xC2 <= b <= 0xDF and i + 1 < end:
            b1 = np.int64(d[i + 1])
            if (b1 & 0xC0) != 0x80:
                return -1, at, flags
            c = ((b & 0x1F) << 6) | (b1 & 0x3F)
            i += 2
        elif 0xE0 <= b <= 0xEF and i + 2 < end:
            b1, b2 = np.int64(d[i + 1]), np.int64(d[i + 2])
            if (b1 & 0xC0) != 0x80 or (b2 & 0xC0) != 0x80:
                return -1, at, flags
            if (b == 0xE0 and b1 < 0xA0) or (b == 0xED and b1 > 0x9F):
                return -1, at, flags
            c = ((b & 0x0F) << 12) | ((b1 & 0x3F) << 6) | (b2 & 0x3F)
            i += 3
            if _needs_cleaning(c):
                flags |= _DIRTY
            # The 3-byte forms that follow. E0 and ED leads, which need the overlong and
            # surrogate checks above, end the run; of the others only E2 (U+200B..U+200D,
            # U+2060) and EF (U+FEFF) lead code points that need cleaning.
            while i + 2 < end:
                lead = np.int64(d[i])
                if lead < 0xE1 or lead > 0xEF or lead == 0xED:
                    break
                b1, b2 = np.int64(d[i + 1]), np.int64(d[i + 2])
                if (b1 & 0xC0) != 0x80 or (b2 & 0xC0) != 0x80:
                    break
                out[at] = c
                at += 1
                c = ((lead & 0x0F) << 12) | ((b1 & 0x3F) << 6) | (b2 & 0x3F)
                i += 3
                if (lead == 0xE2 or lead == 0xEF) and _needs_cleaning(c):
                    flags |= _DIRTY
        elif 0xF0 <= b <= 0xF4 and i + 3 < end:
            b1, b2, b3 = np.int64(d[i + 1]), np.int64(d[i + 2]), np.int64(d[i + 3])
            if (b1 & 0xC0) != 0x80 or (b2 & 0xC0) != 0x80 or (b3 & 0xC0) != 0x80:
                return -1, at, flags
            if (b == 0xF0 and b1 < 0x90) or (b == 0xF4 and b1 > 0x8F):
                return -1, at, flags
            c = ((b & 0x07) << 18) | ((b1 & 0x3F) << 12) | ((b2 & 0x3F) << 6) | (b3 & 0x3F)
            i += 4
        else:
            return -1, at, flags
        out[at] = c
        at += 1
        if _needs_cleaning(c):
            flags |= _DIRTY
    return -1, at, flags


@njit(cache=True, nogil=True, inline="always")
def _literal(d: np.ndarray, i: int, end: int, word: np.ndarray) -> int:
    n = len(word)
    if i + n > end:
        return -1
    for j in range(n):
        if d[i + j] != word[j]:
            return -1
    return i + n


@njit(cache=True, nogil=True, _nrt=False)
def _number(d: np.ndarray, i: int, end: int) -> int:
    """Index after the JSON number at d[i] (no exponent; see `_MAX_NUMBER`), or -1."""
    start = i
    if d[i] == 0x2D:
        i += 1
    if i >= end:
        return -1
    if d[i] == 0x30:
        i += 1
    elif 0x31 <= d[i] <= 0x39:
        while i < end and 0x30 <= d[i] <= 0x39:
            i += 1
    else:
        return -1
    if i < end and d[i] == 0x2E:
        i += 1
        if not (i < end and 0x30 <= d[i] <= 0x39):
            return -1
        while i < end and 0x30 <= d[i] <= 0x39:
            i += 1
    if i < end and (d[i] == 0x65 or d[i] == 0x45):
        return -1
    return i if i - start <= _MAX_NUMBER else -1


@njit(cache=True, nogil=True, _nrt=False)
def _colon(d: np.ndarray, i: int, end: int, scratch: np.ndarray) -> int:
    """After an object key at d[i] and its colon: the index of the value, or -1."""
    if i >= end or d[i] != 0x22:
        return -1
    i = _string(d, i, end, scratch, 0)[0]
    if i < 0:
        return -1
    i = _ws(d, i, end)
    if i >= end or d[i] != 0x3A:
        return -1
    return _ws(d, i + 1, end)


@njit(cache=True, nogil=True, _nrt=False)
def _skip_value(d: np.ndarray, i: int, end: int, scratch: np.ndarray, closers: np.ndarray) -> int:
    """Index after the JSON value at d[i], validated as orjson would, or -1. Iterative (numba's
    cache cannot hold a recursive function): `closers` is the stack of open containers."""
    depth = 0
    while True:
        if i < 0 or i >= end:
            return -1
        b = d[i]
        if b == 0x7B or b == 0x5B:
            close = 0x7D if b == 0x7B else 0x5D
            i = _ws(d, i + 1, end)
            if i >= end or d[i] != close:
                if depth == len(closers):
                    return -1
                closers[depth] = close
                depth += 1
                if close == 0x7D:
                    i = _colon(d, i, end, scratch)
                continue  # the first element
            i += 1
        elif b == 0x22:
            i = _string(d, i, end, scratch, 0)[0]
        elif b == 0x74:
            i = _literal(d, i, end, _TRUE)
        elif b == 0x66:
            i = _literal(d, i, end, _FALSE)
        elif b == 0x6E:
            i = _literal(d, i, end, _NULL_WORD)
        elif b == 0x2D or 0x30 <= b <= 0x39:
            i = _number(d, i, end)
        else:
            return -1
        # A value ends at i: close the containers it completes, or go on to the next element.
        while i >= 0:
            if depth == 0:
                return i
            i = _ws(d, i, end)
            if i < end and d[i] == 0x2C:
                i = _ws(d, i + 1, end)
                if closers[depth - 1] == 0x7D:
                    i = _colon(d, i, end, scratch)
                break
            if i < end and d[i] == closers[depth - 1]:
                depth -= 1
                i += 1
                continue
            return -1
        if i < 0:
            return -1


@njit(cache=True, nogil=True, inline="always")
def _match(cps: np.ndarray, a: int, b: int, names: np.ndarray, bounds: np.ndarray) -> int:
    """The index of the name equal to cps[a:b], or -1."""
    n = b - a
    for k in range(len(bounds) - 1):
        if bounds[k + 1] - bounds[k] != n:
            continue
        same = True
        for j in range(n):
            if cps[a + j] != names[bounds[k] + j]:
                same = False
                break
        if same:
            return k
    return -1


@njit(cache=True, nogil=True, inline="always")
def _strip(cps: np.ndarray, a: int, b: int, space: np.ndarray) -> tuple[int, int]:
    while a < b and space[cps[a]]:
        a += 1
    while b > a and space[cps[b - 1]]:
        b -= 1
    return a, b


@njit(cache=True, nogil=True, inline="always")
def _raw_span(quote: int, after: int, flags: int) -> tuple[int, int]:
    """The bytes between the quotes of the string at d[quote] (`_string` returned `after`
    and `flags`), or (-1, -1) when orjson would write the string otherwise."""
    if flags & _ESCAPED:
        return -1, -1
    return quote + 1, after - 1


@njit(cache=True, nogil=True, inline="always")
def _verbatim(a: int, b: int, string: np.ndarray) -> tuple[int, int]:
    """The raw span of a content that stripped to scratch[a:b], from the string it was:
    `string` is its row of `span` or `fields`, whose last four columns are the decoded span
    in `scratch` and the raw span (see `_raw_span`). The same raw span when stripping removed
    nothing, else (-1, -1)."""
    if a != string[-4] or b != string[-3]:
        return -1, -1
    return string[-2], string[-1]


@njit(cache=True, nogil=True, _nrt=False)
def _turns(
    d: np.ndarray,
    i: int,
    end: int,
    scratch: np.ndarray,
    at: int,
    turn_role: np.ndarray,
    turn_span: np.ndarray,
    turn_raw: np.ndarray,
    n_turns: int,
    turn_keys: np.ndarray,
    turn_key_bounds: np.ndarray,
    role_names: np.ndarray,
    role_bounds: np.ndarray,
    role_codes: np.ndarray,
    space: np.ndarray,
    fields: np.ndarray,
    closers: np.ndarray,
) -> tuple[int, int, int]:
    """Parse the list of turns at d[i] (a '['), each a {role, content} or {from, value} object
    as `converters._message` reads it, appending (role code, stripped content span in
    `scratch`, the content's bytes in `d` when they can be copied as they are, see
    `_verbatim`) to the turn arrays. Returns (index after the list, new scratch end, new turn
    count), with index -1 when the list is not one the Python path would convert alike."""
    i = _ws(d, i + 1, end)
    if i < end and d[i] == 0x5D:
        return -1, at, n_turns  # no turns: a rejection, explained by the Python path
    while True:
        if i >= end or d[i] != 0x7B:
            return -1, at, n_turns
        # kind, start, end, raw start, raw end of the role / content / from / value values
        for k in range(4):
            fields[k, 0] = _ABSENT
        i = _ws(d, i + 1, end)
        if i < end and d[i] == 0x7D:
            return -1, at, n_turns
        while True:
            if i >= end or d[i] != 0x22:
                return -1, at, n_turns
            i, key_end, _ = _string(d, i, end, scratch, at)
            if i < 0:
                return -1, at, n_turns
            key = _match(scratch, at, key_end, turn_keys, turn_key_bounds)
            i = _ws(d, i, end)
            if i >= end or d[i] != 0x3A:
                return -1, at, n_turns
            i = _ws(d, i + 1, end)
            if i >= end:
                return -1, at, n_turns
            if key >= 0:
                if fields[key, 0] != _ABSENT:
                    return -1, at, n_turns  # a duplicate key: the last one would win
                if d[i] == 0x22:
                    quote = i
                    i, value_end, flags = _string(d, i, end, scratch, at)
                    if i < 0 or flags & _DIRTY:
                        return -1, at, n_turns
                    fields[key, 0], fields[key, 1], fields[key, 2] = _STRING, at, value_end
                    fields[key, 3], fields[key, 4] = _raw_span(quote, i, flags)
                    at = value_end
                else:
                    fields[key, 0] = _OTHER
                    i = _skip_value(d, i, end, scratch[at:], closers)
            else:
                i = _skip_value(d, i, end, scratch[at:], closers)
            if i < 0:
                return -1, at, n_turns
            i = _ws(d, i, end)
            if i < end and d[i] == 0x2C:
                i = _ws(d, i + 1, end)
                continue
            if i < end and d[i] == 0x7D:
                i += 1
                break
            return -1, at, n_turns
        # `_message`: {from, value} when either key is there, else {role, content}.
        pair = 2 if fields[2, 0] != _ABSENT or fields[3, 0] != _ABSENT else 0
        if fields[pair, 0] != _STRING or fields[pair + 1, 0] != _STRING:
            return -1, at, n_turns
        role = _match(scratch, fields[pair, 1], fields[pair, 2], role_names, role_bounds)
        if role < 0:
            return -1, at, n_turns
        content = fields[pair + 1]
        a, b = _strip(scratch, content[1], content[2], space)
        if a == b:
            return -1, at, n_turns
        turn_role[n_turns] = role_codes[role]
        turn_span[2 * n_turns] = a
        turn_span[2 * n_turns + 1] = b
        turn_raw[2 * n_turns], turn_raw[2 * n_turns + 1] = _verbatim(a, b, content)
        n_turns += 1
        i = _ws(d, i, end)
        if i < end and d[i] == 0x2C:
            i = _ws(d, i + 1, end)
            continue
        if i < end and d[i] == 0x5D:
            return i + 1, at, n_turns
        return -1, at, n_turns


@njit(cache=True, nogil=True, inline="always")
def _is_blank(d: np.ndarray, a: int, b: int) -> bool:
    """What `bytes.strip` would leave empty."""
    for i in range(a, b):
        c = d[i]
        if c != 0x20 and c != 0x09 and c != 0x0A and c != 0x0D and c != 0x0B and c != 0x0C:
            return False
    return True


@njit(cache=True, nogil=True)
def scan_sft_lines(
    d: np.ndarray, line_ends: np.ndarray, tables: tuple, space: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """See the module docstring. Line k of `d` ends at `line_ends[k]` (its b"\\n", or the end
    of `d`). Returns per line its kind, and for the FAST lines in line order: the code points
    of their conversations (contents joined by "\\n", stripped), the conversation bounds, the
    number of messages of each, their roles, their content bounds (two per message), and
    their raw bounds (two per message): where in `d` the content's JSON string lies, between
    its quotes, when it is exactly what orjson writes for the content (no escape but \\"
    \\\\ \\n \\t, nothing stripped, a single string), else -1, -1. `tables` are the
    `SftScanner` arrays, in its field order."""
    n = len(d)
    n_lines = len(line_ends)
    kinds = np.zeros(n_lines, dtype=np.uint8)
    cps = np.empty(n + 16, dtype=np.uint32)
    text_bounds = np.zeros(n_lines + 1, dtype=np.int64)
    message_counts = np.zeros(n_lines, dtype=np.int64)
    max_turns = n // 16 + 16  # a turn object takes at least 16 bytes
    roles = np.empty(max_turns + 3 * n_lines, dtype=np.uint8)
    content_bounds = np.empty(2 * (max_turns + 3 * n_lines), dtype=np.int64)
    raw_bounds = np.empty(2 * (max_turns + 3 * n_lines), dtype=np.int64)
    n_names = len(tables[1]) - 1  # name_bounds
    work = (
        np.empty(n + 16, dtype=np.uint32),  # scratch: the decoded strings of the line
        np.empty(max_turns, dtype=np.int64),  # turn_role
        np.empty(2 * max_turns, dtype=np.int64),  # turn_span
        np.empty(2 * max_turns, dtype=np.int64),  # turn_raw
        np.empty(n_names, dtype=np.int64),  # kind, per name
        # span: STRING: dirty, start, end, raw start, raw end; TURNS: -, first, count
        np.empty((n_names, 5), dtype=np.int64),
        np.empty(tables[2].shape[1], dtype=np.int64),  # best, per field of name_rank
        # fields: per turn key: kind, start, end, raw start, raw end
        np.empty((len(_TURN_KEYS), 5), dtype=np.int64),
        np.empty(_MAX_DEPTH, dtype=np.uint8),  # closers
        np.empty(max_turns + 3, dtype=np.int64),  # msg_role
        np.empty((max_turns + 3, 4), dtype=np.int64),  # msg_span: content, then an appended input
        np.empty((max_turns + 3, 2), dtype=np.int64),  # msg_raw
    )
    out = (kinds, cps, text_bounds, message_counts, roles, content_bounds, raw_bounds)
    n_fast, n_messages, at = _scan_lines(d, line_ends, tables, space, out, work)
    return (
        kinds,
        cps[:at],
        text_bounds[: n_fast + 1],
        message_counts[:n_fast],
        roles[:n_messages],
        content_bounds[: 2 * n_messages],
        raw_bounds[: 2 * n_messages],
    )


@njit(cache=True, nogil=True, _nrt=False)
def _scan_lines(
    d: np.ndarray, line_ends: np.ndarray, tables: tuple, space: np.ndarray, out: tuple, work: tuple
) -> tuple[int, int, int]:
    """The loop of `scan_sft_lines`, into its arrays `out` and the scratch arrays `work`.
    Returns the number of FAST lines, of their messages and of their code points."""
    (
        names,
        name_bounds,
        name_rank,
        turn_keys,
        turn_key_bounds,
        role_names,
        role_bounds,
        role_codes,
    ) = tables
    kinds, cps, text_bounds, message_counts, roles, content_bounds, raw_bounds = out
    (
        scratch,
        turn_role,
        turn_span,
        turn_raw,
        kind,
        span,
        best,
        fields,
        closers,
        msg_role,
        msg_span,
        msg_raw,
    ) = work
    n_lines = len(line_ends)
    n_names = len(name_bounds) - 1
    n_fields = name_rank.shape[1]
    n_fast = 0
    n_messages = 0
    at = 0
    start = 0
    for line in range(n_lines):
        end = line_ends[line]
        this_start = start
        start = end + 1
        if _is_blank(d, this_start, end):
            kinds[line] = BLANK if line < n_lines - 1 else SKIP
            continue
        kinds[line] = SLOW
        # -- the object: known keys' values decoded into `scratch`, the rest validated
        i = _ws(d, this_start, end)
        if i >= end or d[i] != 0x7B:
            continue
        kind[:] = _ABSENT
        s_at = 0
        n_turns = 0
        i = _ws(d, i + 1, end)
        ok = i < end and d[i] == 0x22  # an empty object has no SFT shape
        while ok:
            i, key_end, _ = _string(d, i, end, scratch, s_at)
            if i < 0:
                ok = False
                break
            name = _match(scratch, s_at, key_end, names, name_bounds)
            i = _ws(d, i, end)
            if i >= end or d[i] != 0x3A:
                ok = False
                break
            i = _ws(d, i + 1, end)
            if i >= end:
                ok = False
                break
            if name < 0:
                i = _skip_value(d, i, end, scratch[s_at:], closers)
            elif kind[name] != _ABSENT:
                ok = False  # a duplicate key
                break
            elif d[i] == 0x22:
                quote = i
                i, value_end, flags = _string(d, i, end, scratch, s_at)
                kind[name] = _STRING
                span[name, 0], span[name, 1], span[name, 2] = flags & _DIRTY, s_at, value_end
                span[name, 3], span[name, 4] = _raw_span(quote, i, flags)
                s_at = value_end
            elif d[i] == 0x5B and (name_rank[name, _MESSAGES] >= 0 or name_rank[name, _CONVERSATIONS] >= 0):
                first = n_turns
                i, s_at, n_turns = _turns(
                    d,
                    i,
                    end,
                    scratch,
                    s_at,
                    turn_role,
                    turn_span,
                    turn_raw,
                    n_turns,
                    turn_keys,
                    turn_key_bounds,
                    role_names,
                    role_bounds,
                    role_codes,
                    space,
                    fields,
                    closers,
                )
                kind[name] = _TURNS
                span[name, 1], span[name, 2] = first, n_turns - first
            elif d[i] == 0x6E:
                i = _literal(d, i, end, _NULL_WORD)
                kind[name] = _NULL
            else:
                i = _skip_value(d, i, end, scratch[s_at:], closers)
                kind[name] = _OTHER
            if i < 0:
                ok = False
                break
            i = _ws(d, i, end)
            if i < end and d[i] == 0x2C:
                i = _ws(d, i + 1, end)
                ok = i < end and d[i] == 0x22
                continue
            if i < end and d[i] == 0x7D:
                i = _ws(d, i + 1, end)
                ok = i == end
                break
            ok = False
        if not ok:
            continue
        # -- `_lookup`: per field, the first alias (lowest rank) with a non-null value
        best[:] = -1
        for name in range(n_names):
            if kind[name] == _ABSENT or kind[name] == _NULL:
                continue
            for f in range(n_fields):
                r = name_rank[name, f]
                if r >= 0 and (best[f] < 0 or r < name_rank[best[f], f]):
                    best[f] = name
        # -- `to_sft`: messages, else conversations (+ system), else single turn
        n_msg = 0
        first = count = 0
        prompt = response = -1
        turns = best[_MESSAGES] if best[_MESSAGES] >= 0 else best[_CONVERSATIONS]
        if turns >= 0:
            if kind[turns] != _TURNS:
                continue
            first, count = span[turns, 1], span[turns, 2]
            with_system = best[_MESSAGES] < 0 and turn_role[first] != _SYSTEM_ROLE
        else:
            prompt, response = best[_PROMPT], best[_RESPONSE]
            if prompt < 0 or response < 0 or best[_HISTORY] >= 0:
                continue
            with_system = True
        system = best[_SYSTEM]
        if with_system and system >= 0:
            if kind[system] != _STRING or span[system, 0]:
                continue
            a, b = _strip(scratch, span[system, 1], span[system, 2], space)
            if a < b:
                msg_role[0] = _SYSTEM_ROLE
                msg_span[0, 0], msg_span[0, 1], msg_span[0, 2] = a, b, -1
                msg_raw[0, 0], msg_raw[0, 1] = _verbatim(a, b, span[system])
                n_msg = 1
        if turns >= 0:
            for t in range(first, first + count):
                msg_role[n_msg] = turn_role[t]
                msg_span[n_msg, 0], msg_span[n_msg, 1], msg_span[n_msg, 2] = (
                    turn_span[2 * t],
                    turn_span[2 * t + 1],
                    -1,
                )
                msg_raw[n_msg, 0], msg_raw[n_msg, 1] = turn_raw[2 * t], turn_raw[2 * t + 1]
                n_msg += 1
        else:
            if kind[prompt] != _STRING or span[prompt, 0] or kind[response] != _STRING or span[response, 0]:
                continue
            a, b = _strip(scratch, span[prompt, 1], span[prompt, 2], space)
            ra, rb = _strip(scratch, span[response, 1], span[response, 2], space)
            if a == b or ra == rb:
                continue
            msg_role[n_msg] = _USER_ROLE
            msg_span[n_msg, 0], msg_span[n_msg, 1], msg_span[n_msg, 2] = a, b, -1
            msg_raw[n_msg, 0], msg_raw[n_msg, 1] = _verbatim(a, b, span[prompt])
            extra = best[_INPUT]
            if extra >= 0:
                if kind[extra] != _STRING or span[extra, 0]:
                    continue
                ia, ib = _strip(scratch, span[extra, 1], span[extra, 2], space)
                if ia < ib:  # the content is prompt "\n" input: written from its code points
                    msg_span[n_msg, 2], msg_span[n_msg, 3] = ia, ib
                    msg_raw[n_msg, 0], msg_raw[n_msg, 1] = -1, -1
            msg_role[n_msg + 1] = _ASSISTANT_ROLE
            msg_span[n_msg + 1, 0], msg_span[n_msg + 1, 1], msg_span[n_msg + 1, 2] = ra, rb, -1
            msg_raw[n_msg + 1, 0], msg_raw[n_msg + 1, 1] = _verbatim(ra, rb, span[response])
            n_msg += 2
        # -- `_check_order`: system? then user, assistant, ... ending with assistant
        body = 1 if msg_role[0] == _SYSTEM_ROLE else 0
        if n_msg == body or msg_role[n_msg - 1] != _ASSISTANT_ROLE:
            continue
        ordered = True
        for m in range(body, n_msg):
            if msg_role[m] != (_USER_ROLE if (m - body) % 2 == 0 else _ASSISTANT_ROLE):
                ordered = False
                break
        if not ordered:
            continue
        # -- the record: contents joined by "\n" in `cps` (when they fit: a name that the alias
        # table gives to several fields can make a record longer than its line)
        needed = n_msg
        for m in range(n_msg):
            needed += msg_span[m, 1] - msg_span[m, 0]
            if msg_span[m, 2] >= 0:
                needed += 1 + msg_span[m, 3] - msg_span[m, 2]
        if at + needed > len(cps) or n_messages + n_msg > len(roles):
            continue
        kinds[line] = FAST
        text_bounds[n_fast] = at
        for m in range(n_msg):
            if m:
                cps[at] = 0x0A
                at += 1
            content_bounds[2 * n_messages] = at
            a, b = msg_span[m, 0], msg_span[m, 1]
            at = copy_slice(cps, at, scratch, a, b)
            if msg_span[m, 2] >= 0:
                cps[at] = 0x0A
                at += 1
                a, b = msg_span[m, 2], msg_span[m, 3]
                at = copy_slice(cps, at, scratch, a, b)
            content_bounds[2 * n_messages + 1] = at
            raw_bounds[2 * n_messages], raw_bounds[2 * n_messages + 1] = msg_raw[m, 0], msg_raw[m, 1]
            roles[n_messages] = msg_role[m]
            n_messages += 1
        message_counts[n_fast] = n_msg
        n_fast += 1
    text_bounds[n_fast] = at
    return n_fast, n_messages, at


def _name_table(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Names as one uint32 code point array plus bounds (name k is cps[bounds[k]:bounds[k+1]])."""
    cps = np.frombuffer("".join(names).encode("utf-32-le"), dtype=np.uint32)
    bounds = np.cumsum([0, *map(len, names)]).astype(np.int64)
    return cps, bounds


@dataclass(frozen=True)
class SftScanner:
    """The tables `scan_sft_lines` matches against, built once per alias table."""

    names: np.ndarray
    name_bounds: np.ndarray
    name_rank: np.ndarray
    turn_keys: np.ndarray
    turn_key_bounds: np.ndarray
    role_names: np.ndarray
    role_bounds: np.ndarray
    role_codes: np.ndarray

    @classmethod
    def of(cls, aliases: Mapping[str, tuple[str, ...]]) -> SftScanner:
        distinct = sorted({name for field in FIELDS for name in aliases[field]})
        rank = np.full((len(distinct), len(FIELDS)), -1, dtype=np.int64)
        for f, field in enumerate(FIELDS):
            for r, name in enumerate(aliases[field]):
                rank[distinct.index(name), f] = r
        role_aliases = list(ROLE_ALIASES)
        return cls(
            *_name_table(distinct),
            rank,
            *_name_table(list(_TURN_KEYS)),
            *_name_table(role_aliases),
            np.array([ROLES.index(ROLE_ALIASES[name]) for name in role_aliases], dtype=np.int64),
        )

    def scan(self, data: np.ndarray, space: np.ndarray) -> tuple[np.ndarray, ...]:
        """`scan_sft_lines` over `data` (uint8), lines ending at each b"\\n" and at the end."""
        line_ends = np.append(np.flatnonzero(data == 0x0A), len(data))
        tables = (
            self.names,
            self.name_bounds,
            self.name_rank,
            self.turn_keys,
            self.turn_key_bounds,
            self.role_names,
            self.role_bounds,
            self.role_codes,
        )
        return line_ends, *scan_sft_lines(data, line_ends, tables, space)
