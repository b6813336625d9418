"""The speed switches of `train:`: they reach TRL under TRL's own names; packing changes the
batch shape, never a conversation's log-probabilities; compiling changes no loss; switches that
cannot work on this machine are refused before anything loads."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from pydantic import ValidationError

from k12tune.config.train import TrainSettings
from k12tune.errors import ConfigError
from k12tune.train.align import run_alignment
from k12tune.train.runlog import TRAIN_LOG, read_log
from k12tune.train.sft import run_sft
from k12tune.train.speed import speed_args

from .test_align import align_config
from .test_sft import sft_config


def test_speed_switches_reach_trls_configs() -> None:
    """The argument names are TRL's own (a renamed field would fail here, not on a GPU)."""
    from trl import DPOConfig as TRLDPOConfig
    from trl import SFTConfig as TRLSFTConfig

    from k12tune.train.pref_trainers import ORPOArgs

    train = TrainSettings(activation_offload=True, torch_compile=True)
    assert speed_args(train) == {"torch_compile": True, "activation_offloading": True}
    for config in (TRLSFTConfig, TRLDPOConfig):
        args = config(output_dir="unused", report_to="none", bf16=False, **speed_args(train))
        assert args.activation_offloading is True and args.torch_compile is True
    orpo = ORPOArgs(output_dir="unused", report_to="none", bf16=False, **speed_args(train, offload_arg=False))
    assert orpo.torch_compile is True and not hasattr(orpo, "activation_offloading")


@pytest.mark.parametrize("kind", ["sft", "dpo", "orpo"])
def test_gpu_only_switches_without_a_gpu_are_one_clear_error(
    kind: str, tiny_base: Path, memorisable_data: Path, pref_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    switches = {"liger_kernels": True, "activation_offload": True, "gradient_checkpointing": True}
    expected = (
        r"train\.liger_kernels: true needs a CUDA GPU \(Liger's kernels are Triton GPU kernels\); "
        r"train\.activation_offload: true needs a CUDA GPU .*; this machine has none: "
        r"set train\.liger_kernels=false and train\.activation_offload=false"
    )
    with pytest.raises(ConfigError, match=expected):
        if kind == "sft":
            run_sft(sft_config(tiny_base, memorisable_data, out, **switches))
        else:
            run_alignment(align_config(kind, tiny_base, pref_data, out, train=switches))
    assert not (out / "manifest.json").exists()


def test_offload_without_checkpointing_is_refused() -> None:
    with pytest.raises(ValidationError, match="activation_offload: true needs gradient_checkpointing: true"):
        TrainSettings(activation_offload=True, gradient_checkpointing=False)


def test_packed_and_padded_batches_give_each_conversation_the_same_loss(
    tiny_base: Path, memorisable_data: Path, tmp_path: Path
) -> None:
    """The stage's own tokenized rows through TRL's collators: one padding-free packed row with
    restarting position ids, and a padded batch with an attention mask. Per conversation, the
    log-probabilities of its answer tokens agree, so the loss does too: nothing attends across
    a boundary and no pad token is scored."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from k12tune.train.sft import build_trainer

    cfg = sft_config(tiny_base, memorisable_data, tmp_path / "out")
    cfg.data.max_length = 512  # room for several conversations per packed row
    trainer, _ = build_trainer(cfg)
    model = trainer.model.eval()
    row = max(trainer.train_dataset, key=lambda r: len(r["seq_lengths"]))
    assert len(row["seq_lengths"]) >= 3, "bfd packing should fill a 512-token row"
    pad = trainer.processing_class.pad_token_id
    packed = trainer.data_collator([row])  # the stage's own collator: padding-free
    starts = [0, *torch.tensor(row["seq_lengths"]).cumsum(0).tolist()]
    pieces = [{key: row[key][a:b] for key in ("input_ids", "labels")} for a, b in pairwise(starts)]
    padded = DataCollatorForLanguageModeling(pad_token_id=pad)(pieces)
    assert "attention_mask" in padded and "position_ids" not in padded
    assert (padded["attention_mask"] == 0).any()  # real padding: the conversations differ in length
    assert "attention_mask" not in packed and (packed["input_ids"] != pad).all()
    assert packed["position_ids"][0].tolist() == [i for a, b in pairwise(starts) for i in range(b - a)]
    with torch.no_grad():
        packed_lp = model(**packed, fused_lm_head=True).log_probs[0]
        padded_lp = model(**padded, fused_lm_head=True).log_probs
    labels_packed = packed["labels"][0, 1:]
    for k, (a, b) in enumerate(pairwise(starts)):
        n = b - a
        # Position a + j of the packed row predicts token a + j + 1; drop the step that would
        # cross into the next conversation (its label is masked anyway).
        torch.testing.assert_close(packed_lp[a : b - 1], padded_lp[k, : n - 1], atol=1e-5, rtol=1e-4)
        assert (labels_packed[a : b - 1] != -100).sum() == (padded["labels"][k, 1:n] != -100).sum() > 0
    assert (packed_lp != 0).sum() == (padded_lp != 0).sum()
    mean_packed = packed_lp.sum() / (labels_packed != -100).sum()
    mean_padded = padded_lp.sum() / (padded["labels"][:, 1:] != -100).sum()
    torch.testing.assert_close(mean_packed, mean_padded, atol=1e-5, rtol=1e-5)


def test_a_compiled_sft_run_logs_the_same_losses(
    tiny_base: Path, memorisable_data: Path, tmp_path: Path
) -> None:
    """torch.compile through the whole stage (TRL's fused LM head, LoRA, packing): the slowest
    test here (the compilation, about a minute on two cores), and the one that catches a library
    upgrade breaking the compiled path."""
    logs = []
    for compiled in (False, True):
        out = tmp_path / f"compiled_{compiled}"
        cfg = sft_config(
            tiny_base, memorisable_data, out, max_steps=3, logging_steps=1, torch_compile=compiled
        )
        trainer, _ = run_sft(cfg)
        assert trainer.args.torch_compile is compiled
        logs.append([row["loss"] for row in read_log(out / TRAIN_LOG) if "loss" in row])
    assert len(logs[0]) == 3 and logs[0][-1] < logs[0][0]
    assert logs[1] == pytest.approx(logs[0], rel=1e-4)
