"""train_orpo and train_dpo on the tiny offline Qwen2 base: losses against hand computation,
reference modes, learning, the language mix actually fed, the SFT start point, real pairs,
long prompts, and the dry run."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from k12tune.config.align import DPOConfig, ORPOConfig
from k12tune.config.data import DataConfig
from k12tune.data.mix import MixedBucketSampler
from k12tune.data.pipeline import prepare_data
from k12tune.errors import ConfigError, DataError
from k12tune.manifest import verify_manifest
from k12tune.train.align import build, run_alignment
from k12tune.train.runlog import LOSS_CURVE, TRAIN_LOG, read_log
from k12tune.train.sft import run_sft

from .conftest import MEMORISABLE, PAIRS, WRONG, pair, write_data
from .test_sft import sft_config


def align_config(kind: str, base: Path, folder: Path, out: Path, **sections) -> ORPOConfig | DPOConfig:
    train = {
        "max_steps": 30,
        "per_device_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "learning_rate": 5e-3,
        "warmup_ratio": 0.0,
        "lr_scheduler": "constant_with_warmup",
        "logging_steps": 5,
        "eval_steps": 15,
        "save_steps": 15,
        "report_to": [],
        "gradient_checkpointing": False,
        **sections.pop("train", {}),
    }
    body = {
        "model": {"base": str(base)},
        "start": {"sft_adapter": None},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
        "data": {
            "train_file": str(folder / "pref_train.jsonl"),
            "val_file": str(folder / "pref_val.jsonl"),
            "max_length": 128,
            "min_answer_tokens": 4,
            **sections.pop("data", {}),
        },
        "train": train,
        "out_dir": str(out),
        **sections,
    }
    model = ORPOConfig if kind == "orpo" else DPOConfig
    return model.model_validate(body)


def answer_logps(model: torch.nn.Module, prompt_ids: list[int], answer_ids: list[int]) -> tuple[float, int]:
    """Sum of the answer tokens' log-probs and their count, straight from the model's logits."""
    ids = torch.tensor([prompt_ids + answer_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1].float()
    logps = torch.log_softmax(logits, -1).gather(-1, ids[0, 1:, None])[:, 0]
    return logps[len(prompt_ids) - 1 :].sum().item(), len(answer_ids)


def test_orpo_loss_matches_hand_computation(tiny_base: Path, tmp_path: Path) -> None:
    uneven = [  # the chosen answer longer in one pair, shorter in the other
        pair("一加一等于几？", "一加一等于二。", "三。"),
        pair("太阳从哪边升起？", "东边。", "太阳从西边升起，也可能从南边升起。"),
    ]
    data = write_data(tmp_path / "data", "pref", uneven, [])
    orpo = {"beta": 0.2, "length_penalty": 0.5}
    cfg = align_config("orpo", tiny_base, data, tmp_path / "out", data={"val_file": None}, orpo=orpo)
    trainer = build(cfg).trainer
    model = trainer.model.eval()
    rows = [trainer.train_dataset[i] for i in (0, 1)]
    batch = trainer._prepare_inputs(trainer.data_collator(rows))
    loss, metrics = trainer.get_batch_loss_metrics(model, batch)

    terms, nll_num, nll_den, shifts = [], 0.0, 0, []
    for row in rows:
        prompt = row["prompt_input_ids"]
        chosen, n_c = answer_logps(model, prompt, row["chosen_input_ids"][len(prompt) :])
        rejected, n_r = answer_logps(model, prompt, row["rejected_input_ids"][len(prompt) :])
        m_c, m_r = chosen / n_c, rejected / n_r
        margin = (m_c - m_r) - (math.log(-math.expm1(m_c)) - math.log(-math.expm1(m_r)))
        shift = 0.5 * (n_c - n_r)
        shifts.append(shift)
        terms.append(math.log1p(math.exp(-(margin + shift))))
        nll_num -= chosen
        nll_den += n_c
    assert shifts[0] > 0 > shifts[1]
    expected = nll_num / nll_den + 0.2 * sum(terms) / 2
    assert math.isclose(loss.item(), expected, rel_tol=1e-4)
    assert math.isclose(metrics["length_shift"], sum(shifts) / 2, rel_tol=1e-6)
    assert math.isclose(metrics["nll_loss"], nll_num / nll_den, rel_tol=1e-4)


def dpo_loss(trainer, rows: list[dict]) -> float:
    batch = trainer._prepare_inputs(trainer.data_collator(rows))
    with torch.no_grad():
        return trainer.compute_loss(trainer.model, batch).item()


def test_dpo_reference_free_and_with_reference_on_the_same_batch(
    tiny_base: Path, pref_data: Path, tmp_path: Path
) -> None:
    free = build(
        align_config("dpo", tiny_base, pref_data, tmp_path / "a", dpo={"reference_free": True})
    ).trainer
    ref = build(align_config("dpo", tiny_base, pref_data, tmp_path / "b")).trainer
    free.model.eval(), ref.model.eval()
    rows_free = [free.train_dataset[i] for i in range(3)]
    rows_ref = [ref.train_dataset[i] for i in range(3)]
    assert [r["chosen_ids"] for r in rows_free] == [r["chosen_ids"] for r in rows_ref]
    # With a reference: the fresh adapter is zero, so policy == reference and every margin is 0.
    assert math.isclose(dpo_loss(ref, rows_ref), math.log(2), rel_tol=1e-6)
    # Reference-free: -log sigmoid(beta * (log pi(chosen) - log pi(rejected))), by hand.
    expected = []
    for row in rows_free:
        chosen, _ = answer_logps(free.model, row["prompt_ids"], row["chosen_ids"])
        rejected, _ = answer_logps(free.model, row["prompt_ids"], row["rejected_ids"])
        expected.append(math.log1p(math.exp(-0.2 * (chosen - rejected))))
    got = dpo_loss(free, rows_free)
    assert math.isclose(got, sum(expected) / 3, rel_tol=1e-4)
    assert abs(got - math.log(2)) > 1e-3


@pytest.mark.parametrize("kind", ["orpo", "dpo"])
def test_training_raises_reward_accuracy_and_margin(
    kind: str, tiny_base: Path, pref_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    trainer, summary = run_alignment(align_config(kind, tiny_base, pref_data, out))
    rows = [r for r in read_log(out / TRAIN_LOG) if "rewards/margins" in r]
    assert len(rows) == 6  # every 5 of 30 steps
    assert rows[-1]["rewards/margins"] > rows[0]["rewards/margins"] + 0.1
    assert rows[-1]["rewards/accuracies"] > 0.5
    assert all(math.isfinite(r["loss"]) for r in rows)
    evals = [r for r in read_log(out / TRAIN_LOG) if "eval_rewards/accuracies" in r]
    assert evals and evals[-1]["eval_rewards/accuracies"] > 0.5
    verify_manifest(out, f"train_{kind}")
    assert (out / LOSS_CURVE).stat().st_size > 0
    assert summary["train_pairs"] == {"read": 8, "kept": 8, "rejected": {}, "lang": {"zh": 8}}
    # The adapter loads back onto the base and gives the trained model's logits.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), out).eval()
    ids = torch.tensor([trainer.processing_class("一加一等于二。")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(
            reloaded(input_ids=ids).logits, trainer.model.eval()(input_ids=ids).logits, atol=1e-5
        )


def mixed_pairs(n_zh: int, n_en: int) -> list[dict]:
    zh = [pair(f"第{i}题：{q}", a, WRONG[i % 8]) for i, (q, a) in enumerate(MEMORISABLE * n_zh) if i < n_zh]
    en = [
        pair(f"Question {i}: what is {i} plus one?", f"It is {i + 1}.", "No idea.", "en") for i in range(n_en)
    ]
    return zh + en


def test_prefer_chinese_ratio_is_the_share_of_the_epoch_fed(
    tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_data(tmp_path / "data", "pref", mixed_pairs(40, 40), [])
    fed: list[list[int]] = []
    iterate = MixedBucketSampler.__iter__

    def spy(self):
        fed.append([])
        for index in iterate(self):
            fed[-1].append(index)
            yield index

    monkeypatch.setattr(MixedBucketSampler, "__iter__", spy)
    cfg = align_config(
        "dpo",
        tiny_base,
        data,
        tmp_path / "out",
        data={"val_file": None, "prefer_chinese_ratio": 0.7},
        train={"max_steps": -1, "epochs": 2, "per_device_batch_size": 2, "save_steps": 1000},
        dpo={"reference_free": True},
    )
    trainer, summary = run_alignment(cfg)
    langs = trainer.train_dataset["lang"]
    # 40 zh at 0.7 and 40 en at 0.3: the zh pool ends first, at 57 pairs (stop): 40 zh + 17 en.
    assert len(fed) == 2 and [len(epoch) for epoch in fed] == [57, 57]
    for epoch in fed:
        share = sum(langs[i] == "zh" for i in epoch) / len(epoch)
        assert abs(share - 0.7) <= 1 / len(epoch)
        assert len(set(epoch)) == len(epoch)
    assert fed[0] != fed[1]  # reshuffled per epoch
    assert summary["global_step"] == 2 * math.ceil(57 / 2)  # the trainer consumed exactly these epochs


def test_sft_start_point_merge_and_continue(
    tiny_base: Path, memorisable_data: Path, pref_data: Path, tmp_path: Path
) -> None:
    sft_out = tmp_path / "sft"
    sft_trainer, _ = run_sft(sft_config(tiny_base, memorisable_data, sft_out, max_steps=10))
    ids = torch.tensor([sft_trainer.processing_class("一加一等于二。")["input_ids"]])
    with torch.no_grad():
        sft_logits = sft_trainer.model.eval()(input_ids=ids).logits
    for mode in ("merge", "continue"):
        start = {"sft_adapter": str(sft_out), "mode": mode}
        cfg = align_config("dpo", tiny_base, pref_data, tmp_path / mode, start=start)
        trainer = build(cfg).trainer
        with torch.no_grad():
            assert torch.allclose(trainer.model.eval()(input_ids=ids).logits, sft_logits, atol=1e-4)
        # The reference is the SFT policy: before any step every margin is 0.
        rows = [trainer.train_dataset[i] for i in range(2)]
        assert math.isclose(dpo_loss(trainer, rows), math.log(2), rel_tol=1e-5)
        peft_config = trainer.model.peft_config
        assert ("ref" in peft_config) == (mode == "continue")
    other = tmp_path / "other_base"
    other.mkdir()
    cfg = align_config("dpo", tiny_base, pref_data, tmp_path / "x", start={"sft_adapter": str(sft_out)})
    cfg.model.base = str(other)
    with pytest.raises(ConfigError, match="was trained on"):
        build(cfg)
    (sft_out / "manifest.json").unlink()
    with pytest.raises(DataError, match="train_sft"):
        build(align_config("orpo", tiny_base, pref_data, tmp_path / "y", start={"sft_adapter": str(sft_out)}))


def test_real_dpo_en_zh_pairs_go_through_both_stages(
    tiny_base: Path, shared_data: Path, tmp_path: Path
) -> None:
    raw = tmp_path / "raw" / "dpo"
    raw.mkdir(parents=True)
    for name in ("dpo_zh_demo.json", "dpo_en_demo.json"):
        (raw / name).symlink_to(shared_data / "pref" / name)
    data_cfg = DataConfig(
        raw_dir=str(tmp_path / "raw"),
        out_dir=str(tmp_path / "proc"),
        sft_sources=[],
        pref_sources=[{"name": "dpo", "lang_hint": "mixed"}],
        clean={"allow_english_fallback": True},
        val_fraction=0.05,
    )
    prepare_data(data_cfg)
    proc = Path(data_cfg.out_dir)
    lines = {n: len((proc / f"pref_{n}.jsonl").read_bytes().splitlines()) for n in ("train", "val")}
    for kind in ("orpo", "dpo"):
        out = tmp_path / kind
        cfg = align_config(
            kind,
            tiny_base,
            proc,
            out,
            data={"max_length": 256, "min_answer_tokens": 16},
            train={"max_steps": 4},
        )
        _, summary = run_alignment(cfg)
        train = summary["train_pairs"]
        assert train["read"] == lines["train"] and summary["val_pairs"]["read"] == lines["val"]
        assert train["kept"] + sum(train["rejected"].values()) == train["read"]
        assert train["rejected"]["prompt_too_long"] > 0  # long multi-turn prompts at 256 tokens
        assert set(train["lang"]) == {"zh", "en"}
        rejects = [
            json.loads(line)
            for line in (out / "rejected_pairs.jsonl").read_text(encoding="utf-8").splitlines()
        ]
        total = sum(sum(summary[f"{n}_pairs"]["rejected"].values()) for n in ("train", "val"))
        assert len(rejects) == total
        assert all(
            r["rule"] == "prompt_too_long" and r["line"] >= 1 and "tokens" in r["detail"] for r in rejects
        )
        assert all(math.isfinite(r["loss"]) for r in read_log(out / TRAIN_LOG) if "loss" in r)
        verify_manifest(out, f"train_{kind}")


def test_bad_lines_and_prompts_that_fill_max_length_are_counted(tiny_base: Path, tmp_path: Path) -> None:
    long_prompt = pair("长" * 300, "好。", "不好。")
    data = write_data(tmp_path / "data", "pref", [*PAIRS[:3], long_prompt], [])
    with open(data / "pref_train.jsonl", "a", encoding="utf-8") as handle:
        handle.write("{not json\n")
        handle.write(json.dumps({"prompt": [{"role": "user", "content": "x"}], "chosen": "a string"}) + "\n")
    cfg = align_config(
        "orpo", tiny_base, data, tmp_path / "out", data={"val_file": None}, train={"max_steps": 2}
    )
    _, summary = run_alignment(cfg)
    assert summary["train_pairs"]["read"] == 6
    assert summary["train_pairs"]["kept"] == 3
    assert summary["train_pairs"]["rejected"] == {"bad_json": 1, "malformed": 1, "prompt_too_long": 1}
    rejects = [json.loads(x) for x in (tmp_path / "out" / "rejected_pairs.jsonl").read_text().splitlines()]
    assert [(r["line"], r["rule"]) for r in rejects] == [
        (5, "bad_json"),
        (6, "malformed"),
        (4, "prompt_too_long"),
    ]
    only_long = write_data(tmp_path / "long", "pref", [long_prompt], [])
    with pytest.raises(DataError, match="no usable pair"):
        run_alignment(align_config("orpo", tiny_base, only_long, tmp_path / "o2", data={"val_file": None}))


def test_dry_runs_load_no_model_and_count_the_reference(
    tiny_base: Path, pref_data: Path, tmp_path: Path
) -> None:
    code = (
        "import sys; from k12tune.cli import run_stage\n"
        "status = run_stage(sys.argv[1], sys.argv[2:])\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules)\n"
        "print('HEAVY', heavy); sys.exit(status)\n"
    )
    common = [
        f"model.base={tiny_base}",
        f"data.train_file={pref_data / 'pref_train.jsonl'}",
        f"data.val_file={pref_data / 'pref_val.jsonl'}",
        "start.sft_adapter=null",
    ]
    outputs = {}
    for name, extra in (
        ("orpo", []),
        ("dpo", []),
        ("dpo_free", ["dpo.reference_free=true"]),
        ("dpo_pre", ["dpo.precompute_ref_log_probs=true"]),
    ):
        stage = "train_orpo" if name == "orpo" else "train_dpo"
        done = subprocess.run(
            [sys.executable, "-c", code, stage, *common, *extra], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        assert "HEAVY []" in done.stdout
        outputs[name] = done.stdout
    assert "by language {'zh': 8}" in outputs["orpo"]
    assert "reference: none (ORPO" in outputs["orpo"]
    assert "alignment adapter disabled" in outputs["dpo"] and "+0 GiB" in outputs["dpo"]
    assert "reference-free" in outputs["dpo_free"] and "precomputed" in outputs["dpo_pre"]
    assert "counted with the base's tokenizer" in outputs["dpo"]
    for text in outputs.values():
        assert "peak GPU memory" in text and "effective batch" in text


def test_dry_run_counts_the_frozen_adapter_copy_when_continuing(tmp_path: Path) -> None:
    from k12tune.train.align_plan import align_plan

    sft = tmp_path / "sft"
    sft.mkdir()
    (sft / "adapter_config.json").write_text(
        json.dumps({"r": 64, "lora_alpha": 16, "target_modules": ["q_proj"]})
    )
    cfg = DPOConfig.model_validate(
        {
            "model": {"quantization": "4bit"},
            "start": {"sft_adapter": str(sft)},
            "data": {"train_file": str(tmp_path / "none.jsonl")},
        }
    )
    text = align_plan(cfg)
    # Qwen2.5-7B: 28 layers x 64 x (3584 + 3584) q_proj LoRA params, fp32.
    copy = 4 * 28 * 64 * (3584 + 3584)
    assert f"+{copy / (1 << 30):.2f} GiB for the frozen copy of the SFT adapter" in text
    assert "LoRA r=64" in text and "trained further" in text


def test_qlora_without_a_gpu_is_one_clear_error(tiny_base: Path, pref_data: Path, tmp_path: Path) -> None:
    cfg = align_config(
        "dpo", tiny_base, pref_data, tmp_path / "out", model={"base": str(tiny_base), "quantization": "4bit"}
    )
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        build(cfg)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_a_shared_out_dir_never_resumes_another_stage(
    tiny_base: Path, pref_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "align"
    short = {"max_steps": 4, "save_steps": 2, "eval_steps": 2, "logging_steps": 2}
    run_alignment(align_config("orpo", tiny_base, pref_data, out, train=short))
    orpo_manifest = (out / "manifest.json").read_bytes()
    with pytest.raises(ConfigError, match="belong to a train_orpo run"):
        run_alignment(align_config("dpo", tiny_base, pref_data, out, train=short))
    assert (out / "manifest.json").read_bytes() == orpo_manifest  # nothing touched
    # Starting over removes the other stage's checkpoints; a resume from a renamed copy works.
    _, summary = run_alignment(
        align_config("dpo", tiny_base, pref_data, out, train={**short, "resume": "never"})
    )
    assert summary["global_step"] == 4 and summary["train_loss"] > 0
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    verify_manifest(out, "train_dpo")
    saved = tmp_path / "my_copy"
    shutil.copytree(out / "checkpoint-2", saved)
    resumed = {**short, "resume": str(saved)}
    _, summary = run_alignment(align_config("dpo", tiny_base, pref_data, out, train=resumed))
    assert summary["resumed_from"] == str(saved) and summary["global_step"] == 4
    assert [r["step"] for r in read_log(out / TRAIN_LOG) if "loss" in r] == [2, 4]
