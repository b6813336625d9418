"""The data stage's config (`configs/data.yaml`)."""

from __future__ import annotations

from itertools import pairwise
from typing import Literal

from pydantic import Field, field_validator, model_validator

from k12tune.config.loader import StrictModel
from k12tune.data.aliases import ALIASES
from k12tune.data.specs import PREF_SPECS, SFT_SPECS, SourceSpec


class CleanConfig(StrictModel):
    min_chars: int = Field(
        default=8, ge=0, description="Shortest text kept, in code points (see filters.py)."
    )
    max_chars: int = Field(default=2048, ge=1, description="Longest text kept, in code points.")
    max_rep_ratio_4gram: float = Field(
        default=0.6, ge=0, le=1, description="Largest share of 4-gram occurrences that repeat in the text."
    )
    min_zh_share: float = Field(
        default=0.3, ge=0, le=1, description="Smallest share of CJK ideographs among letters."
    )
    allow_english_fallback: bool = Field(
        default=False,
        description="Keep records under min_zh_share, tagged lang: en, instead of dropping them.",
    )

    @model_validator(mode="after")
    def _check_range(self) -> CleanConfig:
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) must not exceed max_chars ({self.max_chars})")
        return self


class MixConfig(StrictModel):
    zh_ratio: float = Field(
        default=0.7,
        ge=0,
        le=1,
        description="Share of Chinese records in the training stream while both pools last.",
    )
    length_edges: list[int] = Field(
        default_factory=lambda: [256, 512, 1024],
        description="Bucket edges in code points; buckets are [0,e1), [e1,e2), ..., [eN, inf).",
    )
    when_exhausted: Literal["continue", "stop", "cycle"] = Field(
        default="continue",
        description="When one language runs out: continue with the other (every record once), "
        "stop there (exact ratio, drops the rest), or cycle the short pool (exact ratio, repeats).",
    )

    @field_validator("length_edges")
    @classmethod
    def _increasing(cls, edges: list[int]) -> list[int]:
        if any(b <= a for a, b in pairwise(edges)) or any(e <= 0 for e in edges):
            raise ValueError(f"length_edges must be positive and strictly increasing, got {edges}")
        return edges


class DataConfig(StrictModel):
    raw_dir: str = Field(
        default="data_raw", description="Folder holding one sub-folder of raw files per source."
    )
    out_dir: str = Field(default="data_proc", description="Where the JSONL files, report and manifest go.")
    seed: int = Field(
        default=42, description="Seed of the mixing sampler (the val split does not depend on it)."
    )
    val_fraction: float = Field(
        default=0.02, ge=0, lt=1, description="Share of records, chosen by id hash, that go to the val files."
    )
    batch_size: int = Field(
        default=2048, ge=1, description="Records processed together (vectorised statistics)."
    )
    workers: int = Field(
        default=0,
        ge=0,
        description="Processes that judge batches. 0 = auto: one per CPU (at most 8) for 64 MiB "
        "of local input or more, or a hub source; otherwise 1 (no extra process). Outputs are "
        "byte-identical for any value.",
    )
    sft_sources: list[SourceSpec] = Field(default_factory=lambda: [s.model_copy() for s in SFT_SPECS])
    pref_sources: list[SourceSpec] = Field(default_factory=lambda: [s.model_copy() for s in PREF_SPECS])
    clean: CleanConfig = Field(default_factory=CleanConfig, description="Cleaning rules.")
    mix: MixConfig = Field(default_factory=MixConfig, description="Mixing of the training stream.")
    aliases: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Extra raw field names per canonical field, tried after the built-in ones.",
    )

    @field_validator("aliases")
    @classmethod
    def _known_fields(cls, aliases: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = sorted(set(aliases) - set(ALIASES))
        if unknown:
            raise ValueError(f"unknown canonical field(s) {unknown}; known: {sorted(ALIASES)}")
        return aliases

    @model_validator(mode="after")
    def _unique_names(self) -> DataConfig:
        names = [s.name for s in (*self.sft_sources, *self.pref_sources)]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique, repeated: {dupes}")
        return self
