"""Where the data comes from: the default SFT and preference sources, as data.

A source is read from `local_dir` (default `<raw_dir>/<name>`) when that folder exists, and from
the hub with `datasets` otherwise. `weight` scales how often a source's training records appear
in the training file (see `weights.py`); a weight of 0 means the source is not opened at all.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from k12tune.config.loader import StrictModel


class SourceSpec(StrictModel):
    name: str = Field(description="Short name; also the default local folder <raw_dir>/<name>.")
    hub_id: str | None = Field(
        default=None, description="Hub dataset id (or a local dataset folder) used when no local files exist."
    )
    subsets: list[str] | None = Field(
        default=None,
        description="Hub configuration names to load, e.g. [en, zh]; null loads the default one.",
    )
    split: str = Field(default="train", description="Hub split to read.")
    local_dir: str | None = Field(
        default=None, description="Folder of .json/.jsonl/.parquet files; default <raw_dir>/<name>."
    )
    weight: float = Field(
        default=1.0,
        ge=0,
        description="Copies of each training record: 0 skips the source, 0.5 keeps half, 2 doubles.",
    )
    lang_hint: Literal["zh", "en", "mixed"] = Field(
        default="zh", description="Expected language; the report warns when the measured mix disagrees."
    )


SFT_SPECS: tuple[SourceSpec, ...] = (
    SourceSpec(
        name="chinese_instruct",
        hub_id="Mxode/Chinese-Instruct",
        subsets=["stem_zh", "coig-cqia", "firefly"],
        weight=1.0,
        lang_hint="zh",
    ),
)

PREF_SPECS: tuple[SourceSpec, ...] = (
    SourceSpec(
        name="dpo_en_zh_20k",
        hub_id="llamafactory/DPO-En-Zh-20k",
        subsets=["en", "zh"],
        weight=1.0,
        lang_hint="mixed",
    ),
)
