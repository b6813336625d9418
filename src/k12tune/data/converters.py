"""Raw dicts of any supported shape -> `SFTRecord` / `PrefRecord`. Converters convert; they never
judge quality. A record they cannot convert raises `ConversionError(rule, detail)`, which the
pipeline counts and writes to the rejects file.

SFT shapes (detected per record, first match wins):
  messages      `messages`: [{role, content}] with OpenAI roles
  sharegpt      `conversations`: [{from, value}] with human/gpt/system
  single_turn   alpaca (`instruction`, `input`, `output`, `system`, `history`) and
                `prompt`/`response`, through the alias table
Preference shapes:
  prompt from `conversations`/`messages` (a turn list), or a prompt alias (string or turn list,
  plus `input`, `system`, `history`); `chosen`/`rejected` (and aliases) as a string, a single
  {from, value} / {role, content} dict, or a turn list whose last turn is the answer (a list
  that repeats the prompt before the answer is TRL's implicit-prompt format).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from k12tune.data.aliases import ROLE_ALIASES
from k12tune.data.normalize import clean_text
from k12tune.records import Message, Origin, PrefRecord, SFTRecord

AliasTable = Mapping[str, tuple[str, ...]]
# `clean_text`, or `str.strip` for a record known to hold nothing else it would change.
Cleaner = Callable[[str], str]


class ConversionError(Exception):
    """A record that cannot be converted: `rule` is a short slug, `detail` names the field."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"{rule}: {detail}")
        self.rule = rule
        self.detail = detail


def _lookup(raw: Mapping[str, Any], field: str, aliases: AliasTable) -> tuple[str, Any] | None:
    """The first alias of `field` present in `raw` with a non-null value, as (raw name, value)."""
    for name in aliases[field]:
        value = raw.get(name)
        if value is not None:
            return name, value
    return None


def _text(value: Any, where: str, clean: Cleaner, *, allow_empty: bool = False) -> str:
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in value):
        value = "".join(str(p.get("text", "")) for p in value)  # OpenAI content parts
    if not isinstance(value, str):
        raise ConversionError("wrong_type", f"{where} must be a string, got {type(value).__name__}")
    text = clean(value)
    if not text and not allow_empty:
        raise ConversionError("empty_text", f"{where} is empty")
    return text


def _message(item: Any, where: str, clean: Cleaner) -> Message:
    """A {role, content} or sharegpt {from, value} dict -> Message with a canonical role."""
    if not isinstance(item, dict):
        raise ConversionError("wrong_type", f"{where} must be an object, got {type(item).__name__}")
    if "from" in item or "value" in item:
        role_key, content_key = "from", "value"
    else:
        role_key, content_key = "role", "content"
    if role_key not in item:
        raise ConversionError("missing_field", f"{where}.{role_key}")
    if content_key not in item:
        raise ConversionError("missing_field", f"{where}.{content_key}")
    raw_role = item[role_key]
    role = ROLE_ALIASES.get(raw_role) if isinstance(raw_role, str) else None
    if role is None:
        raise ConversionError("unsupported_role", f"{where}.{role_key} = {raw_role!r}")
    return {"role": role, "content": _text(item[content_key], f"{where}.{content_key}", clean)}


def _turns(value: Any, where: str, clean: Cleaner) -> list[Message]:
    if not isinstance(value, list):
        raise ConversionError("wrong_type", f"{where} must be a list of turns, got {type(value).__name__}")
    if not value:
        raise ConversionError("empty_text", f"{where} has no turns")
    return [_message(item, f"{where}[{i}]", clean) for i, item in enumerate(value)]


def _history(raw: Mapping[str, Any], aliases: AliasTable, clean: Cleaner) -> list[Message]:
    found = _lookup(raw, "history", aliases)
    if found is None:
        return []
    name, value = found
    if not isinstance(value, list):
        raise ConversionError("wrong_type", f"{name} must be a list of [question, answer] pairs")
    turns: list[Message] = []
    for i, pair in enumerate(value):
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            raise ConversionError("wrong_type", f"{name}[{i}] must be a [question, answer] pair")
        turns.append({"role": "user", "content": _text(pair[0], f"{name}[{i}][0]", clean)})
        turns.append({"role": "assistant", "content": _text(pair[1], f"{name}[{i}][1]", clean)})
    return turns


def _system(raw: Mapping[str, Any], aliases: AliasTable, clean: Cleaner) -> list[Message]:
    found = _lookup(raw, "system", aliases)
    if found is None:
        return []
    text = _text(found[1], found[0], clean, allow_empty=True)
    return [{"role": "system", "content": text}] if text else []


def _user_prompt(raw: Mapping[str, Any], aliases: AliasTable, clean: Cleaner) -> list[Message] | None:
    """system? + history + the prompt alias (string, with `input` appended after a newline)."""
    found = _lookup(raw, "prompt", aliases)
    if found is None:
        return None
    name, value = found
    if isinstance(value, list):
        return _system(raw, aliases, clean) + _turns(value, name, clean)
    text = _text(value, name, clean)
    extra = _lookup(raw, "input", aliases)
    if extra is not None:
        extra_text = _text(extra[1], extra[0], clean, allow_empty=True)
        if extra_text:
            text = f"{text}\n{extra_text}"
    return [*_system(raw, aliases, clean), *_history(raw, aliases, clean), {"role": "user", "content": text}]


def _check_order(messages: list[Message], where: str, *, ends_with: str) -> None:
    """system? then user/assistant strictly alternating from user, ending with `ends_with`."""
    body = messages[1:] if messages and messages[0]["role"] == "system" else messages
    if not body:
        raise ConversionError("bad_turn_order", f"{where} has no user turn")
    for i, msg in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if msg["role"] != expected:
            raise ConversionError(
                "bad_turn_order", f"{where}: turn {i + 1} is {msg['role']}, expected {expected}"
            )
    if body[-1]["role"] != ends_with:
        raise ConversionError("bad_turn_order", f"{where} ends with {body[-1]['role']}, expected {ends_with}")


def _sft_messages(raw: Mapping[str, Any], aliases: AliasTable, clean: Cleaner) -> list[Message] | None:
    found = _lookup(raw, "messages", aliases)
    if found is None:
        return None
    return _turns(found[1], found[0], clean)


def _sft_sharegpt(raw: Mapping[str, Any], aliases: AliasTable, clean: Cleaner) -> list[Message] | None:
    found = _lookup(raw, "conversations", aliases)
    if found is None:
        return None
    # A `system` field beside `conversations` (LLaMA-Factory's sharegpt option) goes first.
    turns = _turns(found[1], found[0], clean)
    return turns if turns[0]["role"] == "system" else _system(raw, aliases, clean) + turns


def _sft_single_turn(raw: Mapping[str, Any], aliases: AliasTable, clean: Cleaner) -> list[Message] | None:
    prompt = _user_prompt(raw, aliases, clean)
    response = _lookup(raw, "response", aliases)
    if prompt is None and response is None:
        return None
    for field, found in (("prompt", prompt), ("response", response)):
        if found is None:
            raise ConversionError("missing_field", f"{field} (tried {', '.join(aliases[field])})")
    assert prompt is not None and response is not None
    return [*prompt, {"role": "assistant", "content": _text(response[1], response[0], clean)}]


# Each returns None when the record has none of its shape's fields.
SFT_CONVERTERS: dict[str, Callable[[Mapping[str, Any], AliasTable, Cleaner], list[Message] | None]] = {
    "messages": _sft_messages,
    "sharegpt": _sft_sharegpt,
    "single_turn": _sft_single_turn,
}


def _not_a_dict(raw: Any) -> None:
    if not isinstance(raw, dict):
        raise ConversionError("not_an_object", f"record is a JSON {type(raw).__name__}, expected an object")


def to_sft(raw: Any, origin: Origin, aliases: AliasTable, clean: Cleaner = clean_text) -> SFTRecord:
    _not_a_dict(raw)
    for convert in SFT_CONVERTERS.values():
        messages = convert(raw, aliases, clean)
        if messages is None:
            continue
        _check_order(messages, "conversation", ends_with="assistant")
        return SFTRecord(messages=messages, origin=origin)
    raise ConversionError("unknown_shape", f"no SFT fields among keys {sorted(raw)[:12]}")


def _answer(
    raw: Mapping[str, Any], field: str, aliases: AliasTable, clean: Cleaner
) -> tuple[Message, list[Message]]:
    """The answer turn of `chosen`/`rejected`, and any turns before it (an implicit prompt)."""
    found = _lookup(raw, field, aliases)
    if found is None:
        raise ConversionError("missing_field", f"{field} (tried {', '.join(aliases[field])})")
    name, value = found
    if isinstance(value, str):
        return {"role": "assistant", "content": _text(value, name, clean)}, []
    turns = [_message(value, name, clean)] if isinstance(value, dict) else _turns(value, name, clean)
    if turns[-1]["role"] != "assistant":
        raise ConversionError(
            "bad_turn_order", f"{name}: the answer turn is {turns[-1]['role']}, expected assistant"
        )
    return turns[-1], turns[:-1]


def to_pref(raw: Any, origin: Origin, aliases: AliasTable, clean: Cleaner = clean_text) -> PrefRecord:
    _not_a_dict(raw)
    chosen, chosen_prefix = _answer(raw, "chosen", aliases, clean)
    rejected, rejected_prefix = _answer(raw, "rejected", aliases, clean)
    prompt: list[Message] | None = None
    for field in ("conversations", "messages"):
        found = _lookup(raw, field, aliases)
        if found is not None:
            turns = _turns(found[1], found[0], clean)
            prompt = turns if turns[0]["role"] == "system" else _system(raw, aliases, clean) + turns
            break
    if prompt is None:
        prompt = _user_prompt(raw, aliases, clean)
    if prompt is None:
        if not chosen_prefix:
            raise ConversionError(
                "missing_field", f"prompt (tried {', '.join(aliases['prompt'])}, conversations)"
            )
        if chosen_prefix != rejected_prefix:
            raise ConversionError("bad_turn_order", "chosen and rejected carry different implicit prompts")
        prompt = chosen_prefix
    _check_order(prompt, "prompt", ends_with="user")
    return PrefRecord(prompt=prompt, chosen=[chosen], rejected=[rejected], origin=origin)
