"""export_lora on the tiny offline Qwen2 and real train_sft / train_dpo outputs: the combined and
copied adapters, merged shards loaded without peft, the logit check failing loudly, the card's
eval scores, the dry run and the CLI."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from k12tune.config.export import ExportConfig
from k12tune.config.loader import load_config
from k12tune.digest import file_digest
from k12tune.errors import ConfigError, DataError
from k12tune.export import export as export_module
from k12tune.export.adapter import check_combinable, combine
from k12tune.export.check import Reference, compare, encode_prompts
from k12tune.export.export import export_lora
from k12tune.export.files import copy_adapter
from k12tune.export.plan import export_plan
from k12tune.manifest import verify_manifest, write_manifest
from k12tune.stack import Adapter, Stack, resolve_stack, weight_hashes

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def export_config(base: Path, adapter: Path, out_root: Path, **keys) -> ExportConfig:
    body = {
        "model": {"base": str(base)},
        "adapter": str(adapter),
        "out_root": str(out_root),
        "eval_dir": None,
    }
    return ExportConfig.model_validate({**body, **keys})


def prompt_ids(folder: Path) -> list[torch.Tensor]:
    from transformers import AutoTokenizer

    return encode_prompts(AutoTokenizer.from_pretrained(folder), ["一加一等于几？", "中国的首都是哪里？"])


def logits_of(model, ids: list[torch.Tensor]) -> list[torch.Tensor]:
    with torch.no_grad():
        return [model(input_ids=x).logits[0].float() for x in ids]


def fresh_base(base: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def trained_logits(tiny_base: Path, trained_adapters: dict[str, Path]) -> dict[str, list[torch.Tensor]]:
    """The trained models' logits, built as training built them: the DPO adapter on the base with
    the SFT adapter merged in (train.start.load_policy), independently of k12tune.stack."""
    from peft import PeftModel

    ids = prompt_ids(trained_adapters["align"])
    sft = PeftModel.from_pretrained(fresh_base(tiny_base), trained_adapters["sft"]).eval()
    sft_logits = logits_of(sft, ids)
    aligned = PeftModel.from_pretrained(sft.merge_and_unload(), trained_adapters["align"]).eval()
    return {
        "sft": sft_logits,
        "align": logits_of(aligned, ids),
        "base": logits_of(fresh_base(tiny_base), ids),
    }


def max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


def test_two_adapter_stack_becomes_one_exact_adapter(
    tiny_base: Path, trained_adapters: dict[str, Path], trained_logits: dict, tmp_path: Path
) -> None:
    from peft import PeftModel

    sft, align = trained_adapters["sft"], trained_adapters["align"]
    summary = export_lora(export_config(tiny_base, align, tmp_path))
    folder = tmp_path / "k12-dpo"
    assert summary["target"] == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["README.md", "adapter_config.json", "adapter_model.safetensors", "manifest.json", *TOKENIZER]
    )
    # On a fresh bare base the single adapter is base + SFT + DPO as trained.
    exported = PeftModel.from_pretrained(fresh_base(tiny_base), folder).eval()
    got = logits_of(exported, prompt_ids(folder))
    for x, y in zip(got, trained_logits["align"], strict=True):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=0)
    config = json.loads((folder / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (32, 32)  # 16 + 16, scaling folded into lora_A
    assert config["base_model_name_or_path"] == str(tiny_base)
    manifest = verify_manifest(folder, "export_lora")
    check = manifest["counts"]["check"]
    assert check["passed"] and check["max_abs_diff"] <= 1e-4 and check["tolerance"] == 1e-3
    assert check["adapter_effect"] > 1  # the adapters matter, so the check can see them
    assert manifest["counts"]["rank"] == 32
    assert manifest["inputs"][str(sft / "adapter_model.safetensors")] == file_digest(
        sft / "adapter_model.safetensors"
    )
    card = (folder / "README.md").read_text(encoding="utf-8")
    sft_data = yaml.safe_load((sft / "config.yaml").read_text())["data"]["train_file"]
    pref_data = yaml.safe_load((align / "config.yaml").read_text())["data"]["train_file"]
    for expected in (str(tiny_base), f"`{sft}` (train_sft)", f"`{align}` (train_dpo)", sft_data, pref_data):
        assert expected in card
    assert "its rank is the sum of theirs, 16 + 16 = 32" in card
    assert "--max-lora-rank 32" in card
    assert "DPO, beta 0.2" in card
    assert "No eval_harness scores" in card


def test_one_adapter_stack_is_copied_byte_for_byte(
    tiny_base: Path, trained_adapters: dict[str, Path], tmp_path: Path
) -> None:
    sft = trained_adapters["sft"]
    export_lora(export_config(tiny_base, sft, tmp_path, name="sft-adapter"))
    folder = tmp_path / "sft-adapter"
    for name in ("adapter_config.json", "adapter_model.safetensors", *TOKENIZER):
        assert (folder / name).read_bytes() == (sft / name).read_bytes(), name
    assert not [p for p in folder.iterdir() if p.suffix in {".bin", ".pt", ".pth", ".pkl"}]
    check = verify_manifest(folder, "export_lora")["counts"]["check"]
    assert check["max_abs_diff"] < 1e-6
    assert list(check["alternatives"]) == ["the bare base"]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_merged_shards_load_with_plain_transformers(
    tiny_base: Path, trained_adapters: dict[str, Path], trained_logits: dict, tmp_path: Path, dtype: str
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    cfg = export_config(tiny_base, trained_adapters["align"], tmp_path, mode="merged", dtype=dtype)
    cfg.max_shard_size = "200KB"  # the tiny model's ~700 KB of bf16 weights in several shards
    export_lora(cfg)
    folder = tmp_path / "k12-dpo-merged"
    assert not (folder / "adapter_config.json").exists()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["dtype"] == dtype
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1
    assert shards == sorted(p.name for p in folder.glob("*.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    assert type(model).__name__ == "Qwen2ForCausalLM"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.chat_template == AutoTokenizer.from_pretrained(trained_adapters["align"]).chat_template
    assert (
        GenerationConfig.from_pretrained(folder).eos_token_id
        == GenerationConfig.from_pretrained(tiny_base).eos_token_id
    )
    check = verify_manifest(folder, "export_lora")["counts"]["check"]
    got = logits_of(model, prompt_ids(folder))
    diff = max_diff(got, trained_logits["align"])
    if dtype == "float32":
        assert check["tolerance"] == 1e-3 and diff < 1e-4
    else:
        assert check["tolerance"] == pytest.approx(0.1 * check["reference_scale"])
        # bf16 rounding shows, yet the export is far nearer the trained model than the SFT one.
        assert 1e-3 < diff <= check["tolerance"] < max_diff(trained_logits["sft"], trained_logits["align"])
    assert check["passed"] and check["max_abs_diff"] <= check["tolerance"]


def test_an_export_missing_an_adapter_fails_and_publishes_nothing(
    tiny_base: Path, trained_adapters: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def sft_only(cfg, stack, model, staging):  # a broken writer that drops the DPO adapter
        return {"rank": 16, "weights": copy_adapter(stack.adapters[0].folder, staging), "how": "copied"}

    monkeypatch.setitem(export_module.WRITERS, "adapter", sft_only)
    with pytest.raises(DataError, match=r"export check failed.*logit \d+\.\d+ > tolerance 0\.001") as caught:
        export_lora(export_config(tiny_base, trained_adapters["align"], tmp_path))
    assert "nothing was published" in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # neither the export nor its staging folder


def test_the_check_wants_the_export_nearest_the_trained_model() -> None:
    base = [torch.zeros(3, 5)]
    trained = [torch.ones(3, 5)]
    reference = Reference(trained, {"the bare base": base})
    # Within a loose tolerance, but nearer the base than the trained model: an adapter is lost.
    lost = compare(reference, [torch.full((3, 5), 0.4)], "float32", tolerance=0.7)
    assert not lost.passed and "no nearer the trained model" in lost.failures()[0]
    assert compare(reference, [torch.full((3, 5), 0.9)], "float32", tolerance=0.7).passed
    # An adapter whose effect is within the tolerance cannot be confirmed, and is said so.
    assert compare(reference, [torch.full((3, 5), 0.4)], "float32", tolerance=2.0).unconfirmed() == [
        "the bare base"
    ]
    assert not compare(reference, [torch.full((3, 5), float("nan"))], "float32", tolerance=2.0).passed


def test_a_new_export_replaces_the_old_folder_entirely(
    tiny_base: Path, trained_adapters: dict[str, Path], tmp_path: Path
) -> None:
    export_lora(export_config(tiny_base, trained_adapters["align"], tmp_path, name="k12"))
    export_lora(export_config(tiny_base, trained_adapters["sft"], tmp_path, name="k12", mode="merged"))
    folder = tmp_path / "k12"
    assert not (folder / "adapter_model.safetensors").exists()
    assert verify_manifest(folder, "export_lora")["counts"]["mode"] == "merged"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k12"]


def fake_eval(folder: Path, runs: dict[str, str], inputs: dict[str, str]) -> Path:
    """A finished eval_harness output of the documented shape (results.json's k12tune section,
    the evaluated adapters' weight hashes as the manifest's inputs)."""
    folder.mkdir()
    scores = {
        run: {"cmmlu": {"metric": "acc", "value": 0.25 + 0.0625 * i, "stderr": 0.01}}
        for i, run in enumerate(runs)
    }
    document = {"k12tune": {"runs": runs, "scores": scores}, "lm_eval": {}}
    (folder / "results.json").write_text(json.dumps(document), encoding="utf-8")
    write_manifest(
        folder,
        stage="eval_harness",
        config={},
        inputs=inputs,
        outputs=["results.json"],
        counts={},
        libraries=(),
    )
    return folder


def test_the_card_shows_scores_of_the_same_stack_only(
    tiny_base: Path, trained_adapters: dict[str, Path], tmp_path: Path
) -> None:
    sft, align = trained_adapters["sft"], trained_adapters["align"]
    runs = {"base": str(tiny_base), "sft": f"{tiny_base} + {sft} (train_sft)"}
    hashes = weight_hashes(resolve_stack(sft))
    evaluated = fake_eval(tmp_path / "eval", runs, hashes)
    export_lora(export_config(tiny_base, sft, tmp_path / "out", eval_dir=str(evaluated)))
    card = (tmp_path / "out" / "k12-sft" / "README.md").read_text(encoding="utf-8")
    assert "run `sft`" in card and "| task | metric | base | this model | delta (pp) |" in card
    assert "| cmmlu | acc | 25.00 | 31.25 | +6.25 |" in card
    assert "CC BY-NC-SA" in card
    # The DPO stack was not evaluated there: no scores rather than the SFT run's.
    export_lora(export_config(tiny_base, align, tmp_path / "out", eval_dir=str(evaluated)))
    card = (tmp_path / "out" / "k12-dpo" / "README.md").read_text(encoding="utf-8")
    assert "31.25" not in card and f"no run in {evaluated / 'results.json'} evaluated" in card
    # Scores of other weights at the same path (an older SFT run) are not shown either.
    stale = fake_eval(tmp_path / "stale", runs, dict.fromkeys(hashes, "0" * 64))
    export_lora(export_config(tiny_base, sft, tmp_path / "out", eval_dir=str(stale)))
    card = (tmp_path / "out" / "k12-sft" / "README.md").read_text(encoding="utf-8")
    assert "31.25" not in card and f"{stale} evaluated other weights than" in card


def test_a_wrong_base_names_both(tiny_base: Path, trained_adapters: dict[str, Path], tmp_path: Path) -> None:
    cfg = export_config(tmp_path / "other_base", trained_adapters["align"], tmp_path / "out")
    wanted = f"trained on '{tiny_base}', but model.base is '{tmp_path / 'other_base'}'"
    with pytest.raises(ConfigError, match=re.escape(wanted)):
        export_lora(cfg)
    assert f"not ready: {cfg.adapter} was {wanted}" in export_plan(cfg)
    assert not (tmp_path / "out").exists()


def test_a_qlora_adapter_is_merged_into_the_16bit_base_and_says_so(
    tiny_base: Path, trained_adapters: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A train_sft output that records a 4-bit base (QLoRA needs a GPU to train for real).
    qlora = tmp_path / "qlora"
    shutil.copytree(trained_adapters["sft"], qlora, ignore=shutil.ignore_patterns("checkpoint-*"))
    config = yaml.safe_load((qlora / "config.yaml").read_text())
    config["model"]["quantization"] = "4bit"
    (qlora / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    old = json.loads((qlora / "manifest.json").read_text())
    write_manifest(
        qlora,
        stage="train_sft",
        config=config,
        inputs=old["inputs"],
        outputs=list(old["outputs"]),
        counts=old["counts"],
        libraries=(),
    )
    with caplog.at_level("WARNING"):
        export_lora(export_config(tiny_base, qlora, tmp_path / "out", mode="merged", dtype="float32"))
    assert "QLoRA adapter, trained on the 4-bit (NF4) base, is applied to the 16-bit base" in caplog.text
    card = (tmp_path / "out" / "k12-sft-merged" / "README.md").read_text(encoding="utf-8")
    assert "merging into 4-bit weights would round the update away" in card
    assert "4-bit NF4 (QLoRA)" in card
    assert json.loads((tmp_path / "out" / "k12-sft-merged" / "config.json").read_text())["dtype"] == "float32"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.quantization=4bit", "model.quantization must be none"),
        ("name=a/b", "plain folder name"),
        ("max_shard_size=5Gb", "whole number with a unit"),
        ("check.prompts=[]", "at least one prompt"),
        ("check.tolerence=0.1", "unknown key 'check.tolerence'"),
    ],
)
def test_config_mistakes_are_named(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(ExportConfig, ROOT / "configs" / "export.yaml", [override])


def test_adapters_that_do_not_add_up_are_refused(tmp_path: Path) -> None:
    folders = []
    for name, extra in (("sft", {}), ("align", {"use_dora": True})):
        folder = tmp_path / name
        folder.mkdir()
        config = {"peft_type": "LORA", "r": 8, "bias": "none", **extra}
        (folder / "adapter_config.json").write_text(json.dumps(config))
        folders.append(Adapter(folder=folder, stage="train_sft", config={}, manifest={}))
    stack = Stack(ExportConfig().model, tuple(folders))
    with pytest.raises(ConfigError, match=r"use_dora.*use mode: merged"):
        check_combinable(stack)


@pytest.mark.parametrize(
    "first",
    [
        {"use_rslora": True},
        {"rank_pattern": {"q_proj": 4}, "alpha_pattern": {"v_proj": 64}},
    ],
)
def test_combining_is_exact_with_rslora_and_patterns(tiny_base: Path, tmp_path: Path, first: dict) -> None:
    from peft import LoraConfig, PeftModel, get_peft_model

    def lora(r: int, modules: list[str], **extra) -> LoraConfig:
        return LoraConfig(r=r, lora_alpha=2 * r, target_modules=modules, init_lora_weights=False, **extra)

    model = get_peft_model(fresh_base(tiny_base), lora(8, ["q_proj", "v_proj"], **first), adapter_name="a0")
    model.add_adapter("a1", lora(4, ["q_proj", "k_proj", "o_proj"]))
    model.base_model.set_adapter(["a0", "a1"])
    ids = prompt_ids(tiny_base)
    expected = logits_of(model, ids)
    assert max_diff(expected, logits_of(fresh_base(tiny_base), ids)) > 0.1  # random adapters matter
    combine(export_config(tiny_base, tmp_path, tmp_path), model, tmp_path)
    reloaded = PeftModel.from_pretrained(fresh_base(tiny_base), tmp_path).eval()
    assert max_diff(logits_of(reloaded, ids), expected) < 1e-4
    assert json.loads((tmp_path / "adapter_config.json").read_text())["r"] == 12


def test_dry_run_loads_neither_torch_nor_transformers(
    tiny_base: Path, trained_adapters: dict[str, Path], tmp_path: Path
) -> None:
    code = (
        "import sys; from k12tune.cli import run_stage\n"
        f"rc = run_stage('export_lora', ['--config', 'configs/demo/export.yaml', 'model.base={tiny_base}',"
        f" 'adapter={trained_adapters['align']}', 'out_root={tmp_path / 'out'}', 'mode=merged',"
        " 'max_shard_size=200KB'])\n"
        "print('HEAVY', sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))\n"
        "sys.exit(rc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert "HEAVY []" in result.stdout
    assert f"stack: {resolve_stack(trained_adapters['align']).describe()}" in result.stdout
    assert f"mode: merged -> {tmp_path / 'out' / 'k12-dpo-merged'}/" in result.stdout
    assert "merge the 2 adapter(s) into the base in float32, save bfloat16" in result.stdout
    assert "parameters: about" in result.stdout and "shard(s) of at most 200KB" in result.stdout
    assert "tolerance max(0.001, 0.1 x max |reference logit|)" in result.stdout
    assert not (tmp_path / "out").exists()


def test_cli_exports_end_to_end(tiny_base: Path, trained_adapters: dict[str, Path], tmp_path: Path) -> None:
    config = tmp_path / "export.yaml"
    body = {
        "model": {"base": str(tiny_base)},
        "adapter": str(trained_adapters["align"]),
        "out_root": str(tmp_path / "adapters"),
        "eval_dir": None,
        "device": "cpu",
    }
    config.write_text(yaml.safe_dump(body, allow_unicode=True), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "scripts.export_lora", "--config", str(config), "--dry-run", "false"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "export_lora finished" in result.stdout and "one adapter of rank 32" in result.stdout
    verify_manifest(tmp_path / "adapters" / "k12-dpo", "export_lora")
