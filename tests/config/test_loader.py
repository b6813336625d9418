from __future__ import annotations

from pathlib import Path

import pytest

from k12tune.config.data import DataConfig
from k12tune.config.loader import describe_fields, load_config, parse_override
from k12tune.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_configs_load() -> None:
    cfg = load_config(DataConfig, ROOT / "configs" / "data.yaml")
    assert cfg.sft_sources[0].hub_id == "Mxode/Chinese-Instruct"
    assert cfg.pref_sources[0].subsets == ["en", "zh"]
    assert cfg.clean.min_zh_share == 0.3 and cfg.mix.zh_ratio == 0.7
    demo = load_config(DataConfig, ROOT / "configs" / "demo" / "data.yaml")
    assert demo.clean.allow_english_fallback is True


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "val_fracton: 0.1\nclean:\n  min_char: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(DataConfig, path)
    message = str(err.value)
    assert str(path) in message
    assert "unknown key 'val_fracton'" in message
    assert "unknown key 'clean.min_char'" in message


def test_wrong_type_names_key(tmp_path: Path) -> None:
    path = write(tmp_path, "sft_sources:\n  - name: a\n    weight: lots\n")
    with pytest.raises(ConfigError, match=r"sft_sources\.0\.weight: .*\(got 'lots'\)"):
        load_config(DataConfig, path)


def test_cross_field_checks(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"min_chars \(10\) must not exceed max_chars \(5\)"):
        load_config(DataConfig, write(tmp_path, "clean: {min_chars: 10, max_chars: 5}\n"))
    with pytest.raises(ConfigError, match="strictly increasing"):
        load_config(DataConfig, write(tmp_path, "mix: {length_edges: [5, 5]}\n"))
    with pytest.raises(ConfigError, match="source names must be unique"):
        load_config(DataConfig, write(tmp_path, "sft_sources: [{name: a}]\npref_sources: [{name: a}]\n"))
    with pytest.raises(ConfigError, match="unknown canonical field"):
        load_config(DataConfig, write(tmp_path, "aliases: {promt: [ask]}\n"))


def test_overrides_apply_and_are_validated(tmp_path: Path) -> None:
    path = write(tmp_path, "seed: 1\n")
    cfg = load_config(
        DataConfig,
        path,
        [
            "seed=7",
            "clean.allow_english_fallback=true",
            "sft_sources.0.weight=0",
            "mix.length_edges=[10, 20]",
        ],
    )
    assert cfg.seed == 7 and cfg.clean.allow_english_fallback is True
    assert cfg.sft_sources[0].weight == 0.0 and cfg.mix.length_edges == [10, 20]
    with pytest.raises(ConfigError, match=r"(?s)command line overrides.*unknown key 'clean\.nope'"):
        load_config(DataConfig, path, ["clean.nope=1"])
    with pytest.raises(ConfigError, match="list index '5' out of range"):
        load_config(DataConfig, path, ["sft_sources.5.weight=0"])
    with pytest.raises(ConfigError, match=r"not of the form key\.path=value"):
        parse_override("seed")


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(DataConfig, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(DataConfig, write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(DataConfig, write(tmp_path, "a: [1,\n"))


def test_help_lists_every_key() -> None:
    text = "\n".join(describe_fields(DataConfig))
    for key in (
        "raw_dir",
        "val_fraction",
        "clean.min_chars",
        "clean.allow_english_fallback",
        "mix.when_exhausted",
        "aliases",
    ):
        assert f"  {key} (" in text, key
