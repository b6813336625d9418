"""Raw field names per canonical field, in the order they are tried. Data, in one place.

Real data sets name the same thing differently (`output` vs `response`, `chosen_response` vs
`response_chosen`); the config's `aliases:` section appends names to these lists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

ALIASES: dict[str, tuple[str, ...]] = {
    "messages": ("messages",),
    "conversations": ("conversations", "conversation"),
    "system": ("system", "system_prompt"),
    "prompt": ("prompt", "question", "query", "instruction"),
    "input": ("input",),
    "response": ("response", "output", "answer", "completion"),
    "history": ("history",),
    "chosen": ("chosen", "chosen_response", "response_chosen"),
    "rejected": ("rejected", "rejected_response", "response_rejected"),
}

# sharegpt `from` values (and OpenAI `role` values) -> our roles. Tool turns are not mapped: a
# K12 tutor is not trained on tool calls, so such records are rejected with `unsupported_role`.
ROLE_ALIASES: dict[str, str] = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "bot": "assistant",
    "model": "assistant",
}


def merged_aliases(extra: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """The built-in table with the config's extra names appended (built-ins are tried first)."""
    table = dict(ALIASES)
    for field, names in extra.items():
        table[field] = table[field] + tuple(n for n in names if n not in table[field])
    return table
