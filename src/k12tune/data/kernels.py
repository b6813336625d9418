"""Compiled loops over a batch's code points: the per-character work of the data stage.

numpy needs several full passes and temporaries per statistic (and a sort for 4-grams); these
loops make one pass each and allocate only their outputs. Every function takes the batch as
one uint32 code point array `cps` plus int64 `bounds`: text t is `cps[bounds[t]:bounds[t+1]]`.
Definitions live with their callers (`textstats`, `dedup`); each kernel is tested there
against a plain-Python reference. Compiled once per machine (`cache=True`: numba keeps the
machine code next to this file, or in NUMBA_CACHE_DIR), so later processes only load it.
Imported where a kernel runs, not at module level: numba takes 0.2 s and tens of MiB to import,
which the pipeline's main process, the dry run and `--help` do not need.

Reference counting: numba counts references to an array with atomic instructions each time a
compiled function takes it, returns it or slices it (perf: 3.5% of the whole data stage's
samples). A function compiled without numba's runtime (`_nrt=False`, a numba target option)
cannot allocate, but takes arrays and views without counting. So a kernel that writes per
record allocates its outputs and hands them to such a function for the loop (`json_lines`
and `_json_lines_into`). The helpers' arrays travel in tuples (`layout`, `names`): one
argument each instead of a dozen.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from k12tune.data.batchtext import ID_KEY, LANG_KEYS, SOURCE_KEY

_NGRAM = 4
# Multipliers of the 4-gram hash (odd 64-bit constants from splitmix64 / xxhash).
_MIX1 = np.uint64(0x9E3779B97F4A7C15)
_MIX2 = np.uint64(0xC2B2AE3D27D4EB4F)
_SLOTS_PER_GRAM = 16  # 4-gram hash table size, in slots per 4-gram (see `distinct_4grams`)


@njit(cache=True, nogil=True)
def letter_counts(
    cps: np.ndarray, bounds: np.ndarray, cjk: np.ndarray, letters: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per text: the sums of `cjk[c]` and of `letters[c]` over its code points c. ASCII is
    decided without the tables (its only letters are a-z and A-Z, none CJK): twice as fast on
    mixed text (0.63 against 1.32 ns per code point), as the two table reads are the loop's
    cost."""
    n_texts = len(bounds) - 1
    cjk_counts = np.zeros(n_texts, dtype=np.int64)
    letter_totals = np.zeros(n_texts, dtype=np.int64)
    for t in range(n_texts):
        n_cjk = 0
        n_letters = 0
        for i in range(bounds[t], bounds[t + 1]):
            c = cps[i]
            if c < 0x80:
                n_letters += np.uint32((c | 0x20) - 0x61) < 26  # a-z after folding A-Z to them
            else:
                n_cjk += cjk[c]
                n_letters += letters[c]
        cjk_counts[t] = n_cjk
        letter_totals[t] = n_letters
    return cjk_counts, letter_totals


@njit(cache=True, nogil=True)
def distinct_4grams(cps: np.ndarray, bounds: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """Per selected text: its number of distinct 4-grams (0 for the others).

    An open-addressing hash set per text, O(length). Slot s is `table[s]`: the number of the
    text that filled it plus one (so that the table is never cleared between texts), and what
    it holds; the two share a cache line, so a probe reads one (with separate arrays it read
    two: 3.10 against 2.48 ns per code point on batches of the benchmark corpus). In a text
    of the Basic Multilingual Plane only (nearly all: CJK, Latin, punctuation) a 4-gram is four
    16-bit code units, so the slot holds the 4-gram itself as one 64-bit key, built by shifting
    one code point in per step. Otherwise it holds the position of the 4-gram's first occurrence
    and a probe compares the four code points. Either way a hash collision costs time, never
    exactness.

    The table has at least `_SLOTS_PER_GRAM` slots per 4-gram of the text: at most 1/16 of
    them fill, so a probe nearly always ends at its first slot. On batches of the benchmark
    corpus, the BMP loop took 2.55 ns per code point at 2 slots per 4-gram and 1.48 at 16 (a
    text of 2048 code points then takes 512 KiB, within L2); 32 gained nothing more."""
    n_texts = len(bounds) - 1
    counts = np.zeros(n_texts, dtype=np.int64)
    longest = 0
    for t in range(n_texts):
        if selected[t]:
            longest = max(longest, bounds[t + 1] - bounds[t])
    size = 16
    while size < _SLOTS_PER_GRAM * longest:
        size *= 2
    table = np.zeros((size, 2), dtype=np.uint64)
    for t in range(n_texts):
        start = bounds[t]
        n_grams = bounds[t + 1] - start - (_NGRAM - 1)
        if not selected[t] or n_grams <= 0:
            continue
        mask = 16
        shift = np.uint64(60)  # 64 - log2(mask + 1): the slot is the top bits of the mixed key
        while mask < _SLOTS_PER_GRAM * n_grams:
            mask *= 2
            shift -= np.uint64(1)
        mask -= 1
        stamp = np.uint64(t + 1)
        bits = np.uint64(cps[start] | cps[start + 1] | cps[start + 2])  # every code point, OR-ed
        distinct = 0
        if bits < 0x10000:
            key = (np.uint64(cps[start]) << np.uint64(32)) | (np.uint64(cps[start + 1]) << np.uint64(16))
            key |= np.uint64(cps[start + 2])
            for i in range(start + 3, start + 3 + n_grams):
                c = np.uint64(cps[i])
                bits |= c
                key = (key << np.uint64(16)) | c
                slot = np.int64((key * _MIX1) >> shift)
                while table[slot, 0] == stamp and table[slot, 1] != key:  # another 4-gram's slot
                    slot = (slot + 1) & mask
                if table[slot, 0] != stamp:
                    table[slot, 0] = stamp
                    table[slot, 1] = key
                    distinct += 1
            if bits < 0x10000:
                counts[t] = distinct
                continue
            stamp += np.uint64(n_texts)  # counted again below, in slots not stamped as this text's
            distinct = 0
        for i in range(start, start + n_grams):
            a, b, c, d = cps[i], cps[i + 1], cps[i + 2], cps[i + 3]
            key = (np.uint64(a) << np.uint64(42)) ^ (np.uint64(b) << np.uint64(21)) ^ np.uint64(c)
            key = (key * _MIX1) ^ np.uint64(d)
            key *= _MIX2
            slot = np.int64(key >> np.uint64(32)) & mask
            while True:
                if table[slot, 0] != stamp:
                    table[slot, 0] = stamp
                    table[slot, 1] = i
                    distinct += 1
                    break
                j = np.int64(table[slot, 1])
                if cps[j] == a and cps[j + 1] == b and cps[j + 2] == c and cps[j + 3] == d:
                    break
                slot = (slot + 1) & mask
        counts[t] = distinct
    return counts


@njit(cache=True, nogil=True, inline="always")
def _put_utf8(out: np.ndarray, at: int, c: int) -> int:
    if c < 0x80:
        out[at] = c
        return at + 1
    if c < 0x800:
        out[at] = 0xC0 | (c >> 6)
        out[at + 1] = 0x80 | (c & 0x3F)
        return at + 2
    if c < 0x10000:
        out[at] = 0xE0 | (c >> 12)
        out[at + 1] = 0x80 | ((c >> 6) & 0x3F)
        out[at + 2] = 0x80 | (c & 0x3F)
        return at + 3
    out[at] = 0xF0 | (c >> 18)
    out[at + 1] = 0x80 | ((c >> 12) & 0x3F)
    out[at + 2] = 0x80 | ((c >> 6) & 0x3F)
    out[at + 3] = 0x80 | (c & 0x3F)
    return at + 4


@njit(cache=True, nogil=True)
def dedup_forms_utf8(
    cps: np.ndarray,
    content_bounds: np.ndarray,
    roles: np.ndarray,
    part_messages: np.ndarray,
    record_parts: np.ndarray,
    selected: np.ndarray,
    role_names: np.ndarray,
    role_name_bounds: np.ndarray,
    nfkc: np.ndarray,
    simple: np.ndarray,
    space: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The UTF-8 dedup form of every part of every selected record, assuming that its code
    points are simple.

    Message m is role r = `roles[m]` (named `role_names[role_name_bounds[r]:role_name_bounds[r+1]]`)
    with content `cps[content_bounds[2m]:content_bounds[2m+1]]`; part p holds messages
    `part_messages[p]..part_messages[p+1]-1`, record k parts `record_parts[k]..record_parts[k+1]-1`.
    A part is written as its messages, each as role 0x1F content-form, joined by 0x1E; the parts
    of a record follow each other joined by 0x1F 0x1F, so that a record's dedup key is one
    stretch of the output. The content form maps each code point through `nfkc` and collapses
    white space (`space` of the mapped code point) as `" ".join(s.split())` does. Returns the
    bytes, the part byte bounds (part p is `out[part_starts[p]:part_ends[p]]`, empty when its
    record is not selected), and per record whether it holds a code point that is not simple
    (the caller must take the `unicodedata` path for it).
    """
    n_records = len(record_parts) - 1
    n_messages = len(roles)
    n_parts = len(part_messages) - 1
    capacity = 4 * len(cps) + (role_names.size + 2) * n_messages + 2 * n_parts
    out = np.empty(capacity, dtype=np.uint8)
    part_starts = np.zeros(n_parts, dtype=np.int64)
    part_ends = np.zeros(n_parts, dtype=np.int64)
    not_simple = np.zeros(n_records, dtype=np.bool_)
    layout = (cps, content_bounds, roles, part_messages, record_parts)
    tables = (role_names, role_name_bounds, nfkc, simple, space)
    at = _dedup_forms_into(out, part_starts, part_ends, not_simple, layout, selected, tables)
    return out[:at], part_starts, part_ends, not_simple


@njit(cache=True, nogil=True, _nrt=False)
def _dedup_forms_into(
    out: np.ndarray,
    part_starts: np.ndarray,
    part_ends: np.ndarray,
    not_simple: np.ndarray,
    layout: tuple,
    selected: np.ndarray,
    tables: tuple,
) -> int:
    """The loop of `dedup_forms_utf8`, into its arrays; returns the bytes written."""
    cps, content_bounds, roles, part_messages, record_parts = layout
    role_names, role_name_bounds, nfkc, simple, space = tables
    at = 0
    for k in range(len(record_parts) - 1):
        for p in range(record_parts[k], record_parts[k + 1]):
            if selected[k]:
                if p > record_parts[k]:
                    out[at] = 0x1F
                    out[at + 1] = 0x1F
                    at += 2
                part_starts[p] = at
                for m in range(part_messages[p], part_messages[p + 1]):
                    if m > part_messages[p]:
                        out[at] = 0x1E
                        at += 1
                    r = roles[m]
                    for i in range(role_name_bounds[r], role_name_bounds[r + 1]):
                        out[at] = role_names[i]
                        at += 1
                    out[at] = 0x1F
                    at += 1
                    pending_space = False
                    written = False
                    for i in range(content_bounds[2 * m], content_bounds[2 * m + 1]):
                        c = cps[i]
                        if not simple[c]:
                            not_simple[k] = True
                        mapped = nfkc[c]
                        if space[mapped]:
                            pending_space = written
                            continue
                        if pending_space:
                            out[at] = 0x20
                            at += 1
                            pending_space = False
                        at = _put_utf8(out, at, mapped)
                        written = True
            else:
                part_starts[p] = at
            part_ends[p] = at
    return at


# Bytes that `plain_lines` must look at: line ends, escapes, controls, DEL and the lead bytes of
# the UTF-8 forms it looks for. Most bytes of a line are none of these.
_NOTABLE = np.zeros(256, dtype=np.bool_)
_NOTABLE[[*range(0x20), 0x5C, 0x7F, 0xC2, 0xE2, 0xEF]] = True


@njit(cache=True, nogil=True)
def plain_lines(data: np.ndarray, n_lines: int) -> np.ndarray:
    """Per b"\\n"-separated line of raw JSON bytes (`n_lines` of them): whether no string in
    it can decode to a character that `clean_text` removes or rewrites (CR, C0/C1 controls,
    U+200B..U+200D, U+2060, U+FEFF), so that cleaning its strings is only stripping them.

    A decoded string gets such a character only from an escape (\\r, \\b, \\f, \\uXXXX) or from
    its UTF-8 bytes (0x7F, C2 80..9F, E2 80 8B..8D, E2 81 A0, EF BB BF): raw control bytes
    are not valid inside JSON strings. Anything else that looks like one (in a key, after an
    escaped backslash) only costs the line the full `clean_text`."""
    n = len(data)
    plain = np.ones(n_lines, dtype=np.bool_)
    line = 0
    i = 0
    while i < n:
        b = data[i]
        if not _NOTABLE[b]:
            i += 1
            continue
        if b == 0x0A:
            line += 1
        elif b == 0x5C:  # backslash: an escape, whose second byte is never a line end
            if i + 1 < n and data[i + 1] != 0x0A:
                e = data[i + 1]
                if e == 0x72 or e == 0x62 or e == 0x66 or e == 0x75:  # r b f u
                    plain[line] = False
                i += 1
        elif b < 0x20:
            if b != 0x09 and b != 0x0D:
                plain[line] = False
        elif b == 0x7F:
            plain[line] = False
        elif b == 0xC2:
            if i + 1 < n and 0x80 <= data[i + 1] <= 0x9F:
                plain[line] = False
        elif b == 0xE2:
            if i + 2 < n and (
                (data[i + 1] == 0x80 and 0x8B <= data[i + 2] <= 0x8D)
                or (data[i + 1] == 0x81 and data[i + 2] == 0xA0)
            ):
                plain[line] = False
        elif i + 2 < n and data[i + 1] == 0xBB and data[i + 2] == 0xBF:  # b == 0xEF
            plain[line] = False
        i += 1
    return plain


@njit(cache=True, nogil=True, inline="always")
def _put_json_char(out: np.ndarray, at: int, c: int) -> int:
    """Code point c as orjson writes it inside a string: `"` and `\\` escaped, controls as
    \\b \\t \\n \\f \\r or \\u00xx, everything else (DEL and non-ASCII too) as UTF-8."""
    if c >= 0x20 and c != 0x22 and c != 0x5C:
        return _put_utf8(out, at, c)
    out[at] = 0x5C
    if c == 0x22 or c == 0x5C:
        out[at + 1] = c
        return at + 2
    short = _SHORT_ESCAPES[c]
    if short:
        out[at + 1] = short
        return at + 2
    out[at + 1] = 0x75  # u00xx
    out[at + 2] = 0x30
    out[at + 3] = 0x30
    out[at + 4] = _HEX[c >> 4]
    out[at + 5] = _HEX[c & 0xF]
    return at + 6


_SHORT_ESCAPES = np.zeros(0x20, dtype=np.uint8)
for _code, _letter in ((0x08, "b"), (0x09, "t"), (0x0A, "n"), (0x0C, "f"), (0x0D, "r")):
    _SHORT_ESCAPES[_code] = ord(_letter)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8).copy()
_ROLE_KEY = np.frombuffer(b'{"role":"', dtype=np.uint8).copy()
_CONTENT_KEY = np.frombuffer(b'","content":"', dtype=np.uint8).copy()


@njit(cache=True, nogil=True, inline="always")
def copy_slice(out: np.ndarray, at: int, data: np.ndarray, a: int, b: int) -> int:
    """data[a:b] into out[at:], returning the end. Through views, whose indices are known not
    to be negative, so that the loop is vectorised (in a function without reference counting,
    see the module docstring, a view costs nothing). A slice assignment would allocate: numba
    copies the source when the two may overlap."""
    n = b - a
    target = out[at : at + n]
    source = data[a:b]
    for k in range(n):
        target[k] = source[k]
    return at + n


@njit(cache=True, nogil=True, _nrt=False)
def _put_part(
    out: np.ndarray,
    at: int,
    layout: tuple,
    first: int,
    stop: int,
    role_names: np.ndarray,
    role_name_bounds: np.ndarray,
) -> int:
    """Messages first..stop-1 as `[{"role":...,"content":...},...]`, as orjson writes it: a
    content copied from its raw bytes where it has them (see `batchtext.MessageLayout`),
    else encoded from its code points."""
    cps, content_bounds, roles, _, _, raw, raw_bounds = layout
    out[at] = 0x5B  # [
    at += 1
    for m in range(first, stop):
        if m > first:
            out[at] = 0x2C  # ,
            at += 1
        at = copy_slice(out, at, _ROLE_KEY, 0, len(_ROLE_KEY))
        r = roles[m]
        at = copy_slice(out, at, role_names, role_name_bounds[r], role_name_bounds[r + 1])
        at = copy_slice(out, at, _CONTENT_KEY, 0, len(_CONTENT_KEY))
        if raw_bounds[2 * m] >= 0:
            at = copy_slice(out, at, raw, raw_bounds[2 * m], raw_bounds[2 * m + 1])
        else:
            for i in range(content_bounds[2 * m], content_bounds[2 * m + 1]):
                at = _put_json_char(out, at, cps[i])
        out[at] = 0x22  # "
        out[at + 1] = 0x7D  # }
        at += 2
    out[at] = 0x5D  # ]
    return at + 1


def json_capacity(
    cps: np.ndarray, roles: np.ndarray, part_messages: np.ndarray, role_names: np.ndarray
) -> int:
    """Bytes enough for the body of every record: a code point takes at most 6 (an escape), a
    message its keys and role name, a part its brackets and key, a record its braces."""
    return 6 * len(cps) + (role_names.size + 32) * len(roles) + 16 * len(part_messages)


@njit(cache=True, nogil=True, _nrt=False)
def _put_body(out: np.ndarray, at: int, k: int, layout: tuple, names: tuple) -> int:
    """Record k's parts, each after its key: `KEY0 PART0 KEY1 PART1 ...`, KEYs as `part_keys`
    gives them (`"messages":` or `"prompt":`, `,"chosen":`, `,"rejected":`). `layout` is the
    batch's (cps, content_bounds, roles, part_messages, record_parts, raw, raw_bounds) and
    `names` its (part_keys, part_key_bounds, role_names, role_name_bounds)."""
    part_messages, record_parts = layout[3], layout[4]
    part_keys, part_key_bounds, role_names, role_name_bounds = names
    for q, p in enumerate(range(record_parts[k], record_parts[k + 1])):
        at = copy_slice(out, at, part_keys, part_key_bounds[q], part_key_bounds[q + 1])
        at = _put_part(out, at, layout, part_messages[p], part_messages[p + 1], role_names, role_name_bounds)
    return at


@njit(cache=True, nogil=True, inline="always")
def _put_int(out: np.ndarray, at: int, n: int) -> int:
    """n in decimal, as JSON writes an integer."""
    if n < 0:
        out[at] = 0x2D  # -
        at += 1
        n = -n
    digits = 1
    rest = n // 10
    while rest:
        digits += 1
        rest //= 10
    for d in range(digits - 1, -1, -1):
        out[at + d] = 0x30 + n % 10
        n //= 10
    return at + digits


@njit(cache=True, nogil=True)
def reject_lines(
    cps: np.ndarray,
    content_bounds: np.ndarray,
    roles: np.ndarray,
    part_messages: np.ndarray,
    record_parts: np.ndarray,
    raw: np.ndarray,
    raw_bounds: np.ndarray,
    records: np.ndarray,
    heads: np.ndarray,
    head_bounds: np.ndarray,
    head_of: np.ndarray,
    line_numbers: np.ndarray,
    middles: np.ndarray,
    middle_bounds: np.ndarray,
    middle_of: np.ndarray,
    part_keys: np.ndarray,
    part_key_bounds: np.ndarray,
    role_names: np.ndarray,
    role_name_bounds: np.ndarray,
    capacity: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The rejects file's lines of `records` (in that order): line j is head h = `head_of[j]`
    (`heads[head_bounds[h]:head_bounds[h+1]]`, the JSON up to `"line":`), `line_numbers[j]`,
    middle `middle_of[j]` (the rule and detail up to `"record":`, likewise), the record as
    orjson writes its parts under their keys, `{KEY0 PART0 ...}` (see `_put_body`), then
    `}` and a line end: the pieces of `rejects.reject_line_of_json`, put together without an
    interpreter step per line. `capacity` must cover the bodies, heads and middles. Returns
    the bytes and the end of each line."""
    out = np.empty(capacity + 32 * len(records), dtype=np.uint8)
    ends = np.empty(len(records), dtype=np.int64)
    layout = (cps, content_bounds, roles, part_messages, record_parts, raw, raw_bounds)
    names = (part_keys, part_key_bounds, role_names, role_name_bounds)
    pieces = (heads, head_bounds, head_of, line_numbers, middles, middle_bounds, middle_of)
    at = _reject_lines_into(out, ends, layout, names, records, pieces)
    return out[:at], ends


@njit(cache=True, nogil=True, _nrt=False)
def _reject_lines_into(
    out: np.ndarray, ends: np.ndarray, layout: tuple, names: tuple, records: np.ndarray, pieces: tuple
) -> int:
    """The loop of `reject_lines`, into `out` and `ends`; returns the bytes written."""
    heads, head_bounds, head_of, line_numbers, middles, middle_bounds, middle_of = pieces
    at = 0
    for j in range(len(records)):
        at = copy_slice(out, at, heads, head_bounds[head_of[j]], head_bounds[head_of[j] + 1])
        at = _put_int(out, at, line_numbers[j])
        at = copy_slice(out, at, middles, middle_bounds[middle_of[j]], middle_bounds[middle_of[j] + 1])
        out[at] = 0x7B  # {
        at = _put_body(out, at + 1, records[j], layout, names)
        out[at] = 0x7D  # } of the record
        out[at + 1] = 0x7D  # } of the line
        out[at + 2] = 0x0A
        at += 3
        ends[j] = at
    return at


@njit(cache=True, nogil=True)
def json_lines(
    cps: np.ndarray,
    content_bounds: np.ndarray,
    roles: np.ndarray,
    part_messages: np.ndarray,
    record_parts: np.ndarray,
    raw: np.ndarray,
    raw_bounds: np.ndarray,
    records: np.ndarray,
    ids: np.ndarray,
    is_zh: np.ndarray,
    source: np.ndarray,
    part_keys: np.ndarray,
    part_key_bounds: np.ndarray,
    role_names: np.ndarray,
    role_name_bounds: np.ndarray,
    capacity: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The output lines of `records` (in that order), each `orjson.dumps(record.to_json())`
    plus "\n": `{"id":ID,"source":SOURCE,"lang":"zh"|"en",KEY0 PART0 ...}` (see `_put_body`)
    with `ids[j]` (24 hex digits) and `source` already JSON. Returns the bytes and the end of
    each line."""
    out = np.empty(capacity + 64 * len(records) + len(source) * len(records), dtype=np.uint8)
    ends = np.empty(len(records), dtype=np.int64)
    layout = (cps, content_bounds, roles, part_messages, record_parts, raw, raw_bounds)
    names = (part_keys, part_key_bounds, role_names, role_name_bounds)
    at = _json_lines_into(out, ends, layout, names, records, ids, is_zh, source)
    return out[:at], ends


@njit(cache=True, nogil=True, _nrt=False)
def _json_lines_into(
    out: np.ndarray,
    ends: np.ndarray,
    layout: tuple,
    names: tuple,
    records: np.ndarray,
    ids: np.ndarray,
    is_zh: np.ndarray,
    source: np.ndarray,
) -> int:
    """The loop of `json_lines`, into `out` and `ends`; returns the bytes written."""
    at = 0
    for j in range(len(records)):
        at = copy_slice(out, at, _ID_KEY, 0, len(_ID_KEY))
        at = copy_slice(out, at, ids[j], 0, len(ids[j]))
        at = copy_slice(out, at, _SOURCE_KEY, 0, len(_SOURCE_KEY))
        at = copy_slice(out, at, source, 0, len(source))
        lang = _ZH if is_zh[j] else _EN
        at = copy_slice(out, at, lang, 0, len(lang))
        at = _put_body(out, at, records[j], layout, names)
        out[at] = 0x7D  # }
        out[at + 1] = 0x0A
        at += 2
        ends[j] = at
    return at


_ID_KEY = np.frombuffer(ID_KEY, dtype=np.uint8).copy()
_SOURCE_KEY = np.frombuffer(SOURCE_KEY, dtype=np.uint8).copy()
_EN, _ZH = (np.frombuffer(key, dtype=np.uint8).copy() for key in LANG_KEYS)


@intrinsic
def _pread(typingctx, fd, out, at, size, offset):
    """libc `pread(fd, &out[at], size, offset)`. Declared by symbol name, so the compiled
    code links against the process's libc when it is loaded, and can be cached (a ctypes
    function pointer is an address, which numba will not cache)."""
    sig = types.int64(types.int64, out, types.int64, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        fd_arg, out_arg, at_arg, size_arg, offset_arg = args
        i64 = ir.IntType(64)
        byte_ptr = ir.IntType(8).as_pointer()
        pread = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(i64, [ir.IntType(32), byte_ptr, i64, i64]), "pread"
        )
        data = context.make_array(signature.args[1])(context, builder, out_arg).data
        target = builder.bitcast(builder.gep(data, [at_arg]), byte_ptr)
        return builder.call(pread, [builder.trunc(fd_arg, ir.IntType(32)), target, size_arg, offset_arg])

    return sig, codegen


@njit(cache=True, nogil=True)
def gather_lines(
    fds: np.ndarray, file_nos: np.ndarray, offsets: np.ndarray, sizes: np.ndarray, out: np.ndarray
) -> int:
    """Read line i (`sizes[i]` bytes at `offsets[i]` of file descriptor `fds[file_nos[i]]`) into
    `out`, one after another. Returns the number of bytes read, or -1 - i when line i could
    not be read whole (error or end of file). One system call per line, without the
    interpreter's cost per call (which was 60% of the copy)."""
    at = 0
    for i in range(len(sizes)):
        done = 0
        while done < sizes[i]:
            got = _pread(fds[file_nos[i]], out, at + done, sizes[i] - done, offsets[i] + done)
            if got <= 0:
                return -1 - i
            done += got
        at += done
    return at


@intrinsic
def _sha256_into(typingctx, functions, ctx, data, start, size, out, at):
    """SHA-256 of `data[start:start+size]` into `out[at:at+32]` by OpenSSL's `SHA256_Init`,
    `SHA256_Update` and `SHA256_Final`, whose addresses are `functions[0..2]` and whose state
    lives in `ctx`; returns 1 when all three succeed. The addresses are an argument, not
    constants, so that the compiled code can be cached (see `sha256.openssl_functions`)."""
    sig = types.int64(functions, ctx, data, types.int64, types.int64, out, types.int64)

    def codegen(context, builder, signature, args):
        functions_arg, ctx_arg, data_arg, start_arg, size_arg, out_arg, at_arg = args
        i32, i64, byte_ptr = ir.IntType(32), ir.IntType(64), ir.IntType(8).as_pointer()

        def pointer(k: int, array: ir.Value, index: ir.Value) -> ir.Value:
            base = context.make_array(signature.args[k])(context, builder, array).data
            return builder.bitcast(builder.gep(base, [index]), byte_ptr)

        table = context.make_array(signature.args[0])(context, builder, functions_arg).data

        def function(k: int, *params: ir.Type) -> ir.Value:
            address = builder.load(builder.gep(table, [ir.Constant(i64, k)]))
            return builder.inttoptr(address, ir.FunctionType(i32, params).as_pointer())

        state = pointer(1, ctx_arg, ir.Constant(i64, 0))
        ok_init = builder.call(function(0, byte_ptr), [state])
        ok_update = builder.call(
            function(1, byte_ptr, byte_ptr, i64), [state, pointer(2, data_arg, start_arg), size_arg]
        )
        ok_final = builder.call(function(2, byte_ptr, byte_ptr), [pointer(5, out_arg, at_arg), state])
        return builder.zext(builder.and_(builder.and_(ok_init, ok_update), ok_final), i64)

    return sig, codegen


# Bytes for OpenSSL's SHA256_CTX (112 in OpenSSL 1.1 and 3.x), with room to spare.
_SHA256_STATE = 256


@njit(cache=True, nogil=True)
def sha256_slices(
    functions: np.ndarray, data: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> np.ndarray:
    """SHA-256 of each `data[starts[j]:ends[j]]`, 32 bytes each, one after another (empty when
    OpenSSL reported a failure). One compiled loop instead of a `hashlib` object per slice,
    whose creation and `digest` cost more than hashing a 1 KiB slice."""
    n = len(starts)
    out = np.empty(n * 32, dtype=np.uint8)
    state = np.empty(_SHA256_STATE, dtype=np.uint8)
    for j in range(n):
        if _sha256_into(functions, state, data, starts[j], ends[j] - starts[j], out, j * 32) != 1:
            return out[:0]
    return out
