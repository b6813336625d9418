"""train_sft on the tiny offline Qwen2 base: masking, a real run, reload, resume, dry run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from k12tune.config.sft import SFTConfig
from k12tune.errors import ConfigError, DataError
from k12tune.manifest import verify_manifest
from k12tune.train.runlog import LOSS_CURVE, TRAIN_LOG, read_log
from k12tune.train.sft import build_trainer, run_sft

from .conftest import conversation, write_sft_data


def sft_config(base: Path, data: Path, out: Path, **train) -> SFTConfig:
    settings = {
        "max_steps": 40,
        "per_device_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "learning_rate": 1e-2,
        "warmup_ratio": 0.0,
        "lr_scheduler": "constant_with_warmup",
        "logging_steps": 5,
        "eval_steps": 20,
        "save_steps": 20,
        "report_to": [],
        "gradient_checkpointing": False,
        **train,
    }
    return SFTConfig.model_validate(
        {
            "model": {"base": str(base)},
            "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
            "data": {
                "train_file": str(data / "sft_train.jsonl"),
                "val_file": str(data / "sft_val.jsonl"),
                "max_length": 128,
            },
            "train": settings,
            "out_dir": str(out),
        }
    )


def test_loss_is_on_assistant_tokens_only(tiny_base: Path, tmp_path: Path) -> None:
    two_turns = {
        "messages": [
            {"role": "user", "content": "什么是光合作用？"},
            {"role": "assistant", "content": "植物利用光能制造养分。"},
            {"role": "user", "content": "再说一遍"},
            {"role": "assistant", "content": "好的。"},
        ]
    }
    data = write_sft_data(tmp_path / "data", [two_turns], [])
    cfg = sft_config(tiny_base, data, tmp_path / "out")
    cfg.data.packing = False
    cfg.data.val_file = None
    trainer, _ = build_trainer(cfg)
    batch = trainer.data_collator([trainer.train_dataset[0]])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    tok = trainer.processing_class
    # The rendered ids are Qwen2.5's template, default system prompt included.
    assert tok.decode(ids) == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n什么是光合作用？<|im_end|>\n<|im_start|>assistant\n植物利用光能制造养分。<|im_end|>\n"
        "<|im_start|>user\n再说一遍<|im_end|>\n<|im_start|>assistant\n好的。<|im_end|>\n"
    )
    # Expected: from the token after each "<|im_start|>assistant" through the "\n" after its
    # "<|im_end|>"; derived from the ids independently of the template machinery.
    start, end = tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    role_of_turn = []
    expected = set()
    for i, token in enumerate(ids):
        if token == start:
            newline = ids.index(tok.convert_tokens_to_ids("Ċ"), i)  # byte-level "\n"
            role_of_turn.append(tok.decode(ids[i + 1 : newline]))
            if role_of_turn[-1] == "assistant":
                close = ids.index(end, newline)
                expected.update(range(newline, close + 2))
    assert role_of_turn == ["system", "user", "assistant", "user", "assistant"]
    with_loss = [i for i, label in enumerate(labels) if label != -100]
    assert with_loss == sorted(expected)
    assert all(labels[i] == ids[i] for i in with_loss)
    assert (
        tok.decode([ids[i] for i in with_loss]) == "\n植物利用光能制造养分。<|im_end|>\n\n好的。<|im_end|>\n"
    )


def test_packed_rows_keep_conversations_apart(tiny_base: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    # As in training: TRL's compute_loss passes use_cache=False. (With a cache, transformers
    # skips the packed-sequence detection and the second conversation would see the first.)
    model = AutoModelForCausalLM.from_pretrained(tiny_base, attn_implementation="sdpa").eval()
    a, b = torch.arange(5, 17), torch.arange(40, 49)
    with torch.no_grad():
        alone = [model(input_ids=x[None], use_cache=False).logits[0] for x in (a, b)]
        packed = model(
            input_ids=torch.cat([a, b])[None],
            position_ids=torch.cat([torch.arange(len(a)), torch.arange(len(b))])[None],
            use_cache=False,
        ).logits[0]
    torch.testing.assert_close(packed[: len(a)], alone[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(packed[len(a) :], alone[1], atol=1e-5, rtol=1e-4)


def test_training_learns_and_the_adapter_reloads(
    tiny_base: Path, memorisable_data: Path, tmp_path: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "out"
    trainer, summary = run_sft(sft_config(tiny_base, memorisable_data, out))
    assert summary["global_step"] == 40
    losses = [row["loss"] for row in read_log(out / TRAIN_LOG) if "loss" in row]
    assert len(losses) == 8
    assert losses[-1] < 0.5 * losses[0]  # memorised: the loss at least halves
    assert any("eval_loss" in row for row in read_log(out / TRAIN_LOG))
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer.json",
        "config.yaml",
        LOSS_CURVE,
    ):
        assert (out / name).is_file(), name
    assert not (out / "training_args.bin").exists()  # no pickles among the outputs
    assert (out / LOSS_CURVE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = verify_manifest(out, "train_sft")
    assert manifest["counts"]["global_step"] == 40
    # The saved adapter on a fresh base gives the trained model's logits.
    ids = torch.tensor([[5, 17, 99, 230, 31, 7]])
    trained = trainer.model.eval()
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), out).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, trained(input_ids=ids).logits)


def test_resume_continues_from_the_last_complete_checkpoint(
    tiny_base: Path, memorisable_data: Path, tmp_path: Path, caplog
) -> None:
    out = tmp_path / "out"
    # A run that "crashed" after its checkpoint at step 20 (max_steps ends it there).
    run_sft(sft_config(tiny_base, memorisable_data, out, max_steps=20, save_steps=10))
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-20"]
    # A half-written later checkpoint must be skipped, not resumed from.
    (out / "checkpoint-30").mkdir()
    (out / "checkpoint-30" / "trainer_state.json").write_text("{}")
    trainer, summary = run_sft(sft_config(tiny_base, memorisable_data, out, max_steps=30, save_steps=10))
    assert summary["resumed_from"] == str(out / "checkpoint-20")
    assert "skipping incomplete checkpoint" in caplog.text
    assert trainer.state.global_step == 30
    steps = [row["step"] for row in read_log(out / TRAIN_LOG) if "loss" in row]
    assert steps == [5, 10, 15, 20, 25, 30]  # the first run's rows, then the resumed ones


def test_4bit_without_a_gpu_is_a_clear_error(tiny_base: Path, memorisable_data: Path, tmp_path: Path) -> None:
    cfg = sft_config(tiny_base, memorisable_data, tmp_path / "out")
    cfg.model.quantization = "4bit"
    with pytest.raises(ConfigError, match="4bit \\(QLoRA\\) needs a CUDA GPU"):
        run_sft(cfg)
    assert "bitsandbytes" not in sys.modules


def test_unfinished_data_is_refused(tiny_base: Path, tmp_path: Path) -> None:
    data = write_sft_data(tmp_path / "data", [conversation("问", "答")], [])
    (data / "manifest.json").unlink()
    with pytest.raises(DataError, match="holds no finished prepare_data output"):
        run_sft(sft_config(tiny_base, data, tmp_path / "out"))
    shutil.rmtree(data)
    with pytest.raises(DataError, match="does not exist: run `k12tune prepare_data"):
        run_sft(sft_config(tiny_base, data, tmp_path / "out"))


def test_dry_run_loads_neither_torch_nor_transformers(
    tiny_base: Path, memorisable_data: Path, tmp_path: Path
) -> None:
    code = (
        "import sys; from k12tune.cli import run_stage\n"
        f"rc = run_stage('train_sft', ['--config', 'configs/sft.yaml', 'model.base={tiny_base}',"
        f" 'data.train_file={memorisable_data / 'sft_train.jsonl'}',"
        f" 'data.val_file={memorisable_data / 'sft_val.jsonl'}'])\n"
        "print('HEAVY', sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules))\n"
        "sys.exit(rc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
        check=True,
    )
    assert "HEAVY []" in result.stdout
    assert "8 training records" in result.stdout
    assert "counted with the base's tokenizer" in result.stdout
    assert "peak GPU memory (estimate" in result.stdout
    assert "note: a micro-batch's" not in result.stdout  # the shipped config packs one row per micro-batch
    assert not (tmp_path / "out").exists()


def test_dry_run_warns_when_packed_rows_share_a_dense_mask(memorisable_data: Path) -> None:
    from k12tune.train.sft_plan import sft_plan

    cfg = SFTConfig.model_validate(
        {
            "data": {"train_file": str(memorisable_data / "sft_train.jsonl"), "val_file": None},
            "train": {"per_device_batch_size": 2, "gradient_accumulation_steps": 8},
        }
    )
    note = "  note: a micro-batch's 2 packed rows are joined into one sequence whose sdpa mask is dense"
    assert note in sft_plan(cfg)
    cfg.model.attn_implementation = "flash_attention_2"
    assert "note: a micro-batch's" not in sft_plan(cfg)
    cfg.model.attn_implementation, cfg.data.packing = "sdpa", False
    assert "note: a micro-batch's" not in sft_plan(cfg)


def test_dry_run_proposes_a_fitting_batch_when_over_budget(tmp_path: Path) -> None:
    from k12tune.train.sft_plan import sft_plan

    cfg = SFTConfig.model_validate(
        {"train": {"per_device_batch_size": 8, "gradient_accumulation_steps": 2}, "gpu_memory_gb": 24}
    )
    cfg.data.train_file = str(tmp_path / "missing.jsonl")
    plan = sft_plan(cfg)
    assert "WARNING: over gpu_memory_gb 24" in plan
    assert "proposal: train.per_device_batch_size=4 train.gradient_accumulation_steps=4" in plan
    assert (
        "speed: attention sdpa, activation checkpointing on, Liger kernels off, torch.compile off, "
        "loss through TRL's fused LM head (no full logits)"
    ) in plan
    cfg.train.per_device_batch_size, cfg.train.gradient_accumulation_steps = 4, 4
    assert "fits gpu_memory_gb 24" in sft_plan(cfg)


@pytest.mark.parametrize(
    ("name", "kind", "zero_stage"),
    [
        ("single_gpu", "NO", None),
        ("ddp", "MULTI_GPU", None),
        ("deepspeed_zero2", "DEEPSPEED", 2),
        ("deepspeed_zero3", "DEEPSPEED", 3),
        ("fsdp", "FSDP", None),
    ],
)
def test_accelerate_configs_load(name: str, kind: str, zero_stage: int | None) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(Path(__file__).parents[2] / "configs" / "accelerate" / f"{name}.yaml"))
    assert config.distributed_type.name == kind
    assert config.mixed_precision == "bf16"
    assert (config.deepspeed_config or {}).get("zero_stage") == zero_stage


def test_4bit_with_sharding_is_refused(monkeypatch, tmp_path: Path) -> None:
    from k12tune.config.train import ModelConfig
    from k12tune.train.model import check_quantization

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(ConfigError, match="which DEEPSPEED sharding cannot split"):
        check_quantization(ModelConfig(quantization="4bit"))
    check_quantization(ModelConfig(quantization="none"))
