"""The record types every stage exchanges, with provenance, and their JSON-lines form.

A message is a plain `{"role": ..., "content": ...}` dict (the form chat templates and TRL take);
records are small slotted dataclasses so that no stage relies on positional conventions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")


class Message(TypedDict):
    role: str
    content: str


@dataclass(slots=True)
class Origin:
    """Where a record came from: source name, file (or hub id:subset:split) and its 1-based line.

    `line` is the line number in JSONL files, the line on which an element starts in a JSON array,
    and the row number in Parquet files and hub datasets.
    """

    source: str
    file: str
    line: int


@dataclass(slots=True)
class SFTRecord:
    """One conversation: `messages` is [system?, user, assistant, user, assistant, ...]."""

    messages: list[Message]
    origin: Origin
    id: str = ""
    lang: str = ""

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "source": self.origin.source, "lang": self.lang, "messages": self.messages}


@dataclass(slots=True)
class PrefRecord:
    """A preference pair: `prompt` is the conversation so far (ending with a user turn),
    `chosen` and `rejected` are each a one-element list holding the assistant's answer."""

    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]
    origin: Origin
    id: str = ""
    lang: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "source": self.origin.source,
            "lang": self.lang,
            "prompt": self.prompt,
            "chosen": self.chosen,
            "rejected": self.rejected,
        }


Record = SFTRecord | PrefRecord
