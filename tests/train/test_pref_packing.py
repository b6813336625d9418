"""Padding-free preference batches: the packed row by hand, the same log-probs, losses and LoRA
gradients as TRL's padded batch on the tiny Qwen2 base (fp32, sdpa), real runs through the
stages, and the clear error for what the packed path does not compute."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from trl import DPOConfig as TRLDPOConfig
from trl.experimental.utils import DPODataCollatorWithPadding
from trl.trainer.dpo_trainer import DataCollatorForPreference

from k12tune.train.align import build, run_alignment
from k12tune.train.pref_packing import PackedPairs, packed_logps
from k12tune.train.pref_trainers import K12DPOTrainer
from k12tune.train.runlog import TRAIN_LOG, read_log
from k12tune.train.sft import run_sft

from .test_align import align_config
from .test_sft import sft_config

DPO_METRICS = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
)
EXAMPLES = [
    {"prompt_ids": [1, 2, 3], "chosen_ids": [4, 5], "rejected_ids": [6], "ref_chosen_logps": -1.5},
    {"prompt_ids": [7, 8], "chosen_ids": [9], "rejected_ids": [10, 11], "ref_chosen_logps": -2.0},
]


def test_dpo_rows_are_packed_chosen_then_rejected_without_a_pad() -> None:
    batch = PackedPairs("dpo")(EXAMPLES)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5, 7, 8, 9, 1, 2, 3, 6, 7, 8, 10, 11]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3, 0, 1, 2, 3]]
    assert batch["completion_mask"].tolist() == [[0, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 1]]
    assert batch["seq_idx"].tolist() == [[0] * 5 + [1] * 3 + [2] * 4 + [3] * 4]
    for key in ("cu_seq_lens_q", "cu_seq_lens_k"):
        assert batch[key].dtype == torch.int32 and batch[key].tolist() == [0, 5, 8, 12, 16]
    assert batch["max_length_q"] == batch["max_length_k"] == 5
    assert batch["ref_chosen_logps"].tolist() == [-1.5, -2.0]
    assert "ref_rejected_logps" not in batch and "attention_mask" not in batch
    assert 0 not in batch["input_ids"]  # TRL pads with 0 here; nothing is padded


@pytest.mark.parametrize("max_length", [None, 4, 3])
def test_truncation_keeps_the_start_like_trls_padded_collator(max_length: int | None) -> None:
    packed = PackedPairs("dpo", max_length=max_length)(EXAMPLES)
    padded = DataCollatorForPreference(pad_token_id=0, max_length=max_length)(EXAMPLES)
    keep = padded["attention_mask"].bool()
    assert packed["input_ids"][0].tolist() == padded["input_ids"][keep].tolist()
    assert packed["completion_mask"][0].tolist() == padded["completion_mask"][keep].tolist()
    assert packed["cu_seq_lens_q"].diff().tolist() == keep.sum(1).tolist()
    if max_length == 4:
        assert packed["input_ids"].tolist() == [[1, 2, 3, 4, 7, 8, 9, 1, 2, 3, 6, 7, 8, 10, 11]]
        assert packed["completion_mask"].tolist() == [[0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 1]]
        assert packed["max_length_q"] == 4


def test_orpo_rows_come_from_the_tokenised_columns() -> None:
    row = {
        "chosen_input_ids": [1, 2, 4],
        "chosen_labels": [-100, -100, 4],
        "rejected_input_ids": [1, 2, 5, 6],
        "rejected_labels": [-100, -100, 5, 6],
        "prompt": "ignored",
    }
    rows = [row]
    batch = PackedPairs("orpo")(rows)
    assert batch["input_ids"].tolist() == [[1, 2, 4, 1, 2, 5, 6]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2, 3]]
    assert batch["completion_mask"].tolist() == [[0, 0, 1, 0, 0, 1, 1]]
    assert batch["cu_seq_lens_q"].tolist() == [0, 3, 7]


def perturb_lora(model: torch.nn.Module) -> None:
    """Before a step the policy equals the reference; a random trained adapter's B makes the
    comparison mean something (the frozen "ref" copy stays as it is)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B.default." in name:
                param.add_(torch.randn(param.shape, generator=generator) * 0.05)


def loss_and_grads(trainer: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.model.zero_grad()
    return loss.detach(), grads


@pytest.mark.parametrize("start", ["fresh", "continue"])
def test_dpo_packed_equals_padded(
    start: str, tiny_base: Path, pref_data: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """fresh: the reference is the adapter disabled; continue: TRL's frozen "ref" adapter."""
    sections: dict[str, Any] = {"data": {"padding_free": True}}
    if start == "continue":
        sft_out = tmp_path / "sft"
        run_sft(sft_config(tiny_base, request.getfixturevalue("memorisable_data"), sft_out, max_steps=5))
        sections["start"] = {"sft_adapter": str(sft_out), "mode": "continue"}
    trainer = build(align_config("dpo", tiny_base, pref_data, tmp_path / "out", **sections)).trainer
    assert ("ref" in trainer.model.peft_config) == (start == "continue")
    assert isinstance(trainer.data_collator, PackedPairs) and trainer.args.padding_free is False
    perturb_lora(trainer.model)
    trainer.model.eval()
    rows = [trainer.train_dataset[i] for i in range(4)]
    # Cut the longer half of the sequences, so the truncation runs through the model too.
    lengths = sorted(len(r["prompt_ids"]) + len(r[f"{s}_ids"]) for r in rows for s in ("chosen", "rejected"))
    max_length = lengths[len(lengths) // 2]
    assert lengths[0] < max_length < lengths[-1]
    padded = trainer._prepare_inputs(
        DataCollatorForPreference(pad_token_id=trainer.processing_class.pad_token_id, max_length=max_length)(
            rows
        )
    )
    packed = trainer._prepare_inputs(PackedPairs("dpo", max_length=max_length)(rows))
    assert packed["input_ids"].shape[1] < padded["input_ids"].numel()

    # The reference: the policy with the alignment adapter disabled.
    ref_padded = torch.cat(trainer.compute_ref_log_probs(trainer.model, padded))
    ref_packed = torch.cat(trainer.compute_ref_log_probs(trainer.model, packed))
    torch.testing.assert_close(ref_packed, ref_padded, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        labels = padded["input_ids"].masked_fill(padded["completion_mask"] == 0, -100)
        out = trainer.model(
            padded["input_ids"], attention_mask=padded["attention_mask"], labels=labels, fused_lm_head=True
        )
        policy_packed = packed_logps(trainer.model, packed)[0]
    torch.testing.assert_close(policy_packed, out.log_probs.sum(1), atol=1e-5, rtol=1e-5)
    assert (policy_packed - ref_packed).abs().min() > 1e-3  # the perturbed adapter moved the policy

    loss_padded, grads_padded = loss_and_grads(trainer, padded)
    metrics_padded = {k: v[-1] for k, v in trainer._metrics["eval"].items()}
    loss_packed, grads_packed = loss_and_grads(trainer, packed)
    metrics_packed = {k: v[-1] for k, v in trainer._metrics["eval"].items()}
    torch.testing.assert_close(loss_packed, loss_padded, atol=1e-6, rtol=1e-5)
    assert abs(loss_packed.item() - math.log(2)) > 1e-4
    assert grads_packed.keys() == grads_padded.keys() and len(grads_packed) > 0
    torch.testing.assert_close(grads_packed, grads_padded, atol=1e-6, rtol=1e-4)
    for key in DPO_METRICS:
        assert math.isclose(metrics_packed[key], metrics_padded[key], rel_tol=1e-5, abs_tol=1e-6), key


def test_orpo_packed_equals_padded(tiny_base: Path, pref_data: Path, tmp_path: Path) -> None:
    cfg = align_config("orpo", tiny_base, pref_data, tmp_path / "out", data={"padding_free": True})
    trainer = build(cfg).trainer
    assert isinstance(trainer.data_collator, PackedPairs)
    perturb_lora(trainer.model)
    trainer.model.eval()
    rows = [trainer.train_dataset[i] for i in range(4)]
    pad_id = trainer.processing_class.pad_token_id
    padded = trainer._prepare_inputs(DPODataCollatorWithPadding(pad_token_id=pad_id)(rows))
    packed = trainer._prepare_inputs(trainer.data_collator(rows))
    with torch.no_grad():
        sums_padded, counts_padded, _ = trainer.answer_logps(trainer.model, padded)
        sums_packed, counts_packed, _ = trainer.answer_logps(trainer.model, packed)
    assert counts_packed.tolist() == counts_padded.tolist()
    answers = [sum(x != -100 for x in r[f"{s}_labels"]) for s in ("chosen", "rejected") for r in rows]
    assert counts_packed.tolist() == answers
    torch.testing.assert_close(sums_packed, sums_padded, atol=1e-5, rtol=1e-5)

    def run(batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float], dict[str, torch.Tensor]]:
        trainer.model.zero_grad()
        loss, metrics = trainer.get_batch_loss_metrics(trainer.model, batch)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
        return loss.detach(), metrics, grads

    loss_padded, metrics_padded, grads_padded = run(padded)
    loss_packed, metrics_packed, grads_packed = run(packed)
    torch.testing.assert_close(loss_packed, loss_padded, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grads_packed, grads_padded, atol=1e-6, rtol=1e-4)
    assert metrics_packed.keys() == metrics_padded.keys()
    for key, value in metrics_padded.items():
        assert math.isclose(metrics_packed[key], value, rel_tol=1e-5, abs_tol=1e-6), key


@pytest.mark.parametrize("kind", ["dpo", "orpo"])
def test_padding_free_run_learns_like_the_padded_one(
    kind: str, tiny_base: Path, pref_data: Path, tmp_path: Path
) -> None:
    train = {"max_steps": 10, "logging_steps": 5, "eval_steps": 10, "save_steps": 10}
    logs = {}
    for free in (False, True):
        out = tmp_path / str(free)
        cfg = align_config(kind, tiny_base, pref_data, out, data={"padding_free": free}, train=train)
        trainer, _ = run_alignment(cfg)
        assert isinstance(trainer.data_collator, PackedPairs) == free
        logs[free] = read_log(out / TRAIN_LOG)
    rows = {free: [r for r in log if "rewards/margins" in r] for free, log in logs.items()}
    assert [r["step"] for r in rows[True]] == [5, 10]
    for packed, padded in zip(rows[True], rows[False], strict=True):
        for key in ("loss", "rewards/margins", "rewards/accuracies"):
            assert math.isclose(packed[key], padded[key], rel_tol=1e-3, abs_tol=1e-4), (key, packed, padded)
    assert rows[True][-1]["rewards/margins"] > rows[True][0]["rewards/margins"]
    assert rows[True][-1]["rewards/accuracies"] == 1.0
    evals = [r for r in logs[True] if "eval_rewards/accuracies" in r]
    assert len(evals) == 1 and evals[0]["eval_rewards/accuracies"] == 1.0


@pytest.mark.parametrize("dpo", [{"precompute_ref_log_probs": True}, {"reference_free": True}])
def test_dpo_reference_read_from_the_packed_batch(
    dpo: dict[str, bool], tiny_base: Path, pref_data: Path, tmp_path: Path
) -> None:
    cfg = align_config("dpo", tiny_base, pref_data, tmp_path / "out", data={"padding_free": True}, dpo=dpo)
    trainer = build(cfg).trainer
    trainer.model.eval()
    rows = [trainer.train_dataset[i] for i in range(3)]
    packed = trainer._prepare_inputs(trainer.data_collator(rows))
    pad_id = trainer.processing_class.pad_token_id
    padded = trainer._prepare_inputs(DataCollatorForPreference(pad_token_id=pad_id, max_length=128)(rows))
    for key in ("ref_chosen_logps", "ref_rejected_logps"):
        assert packed[key].tolist() == padded[key].tolist()
    with torch.no_grad():
        loss_packed = trainer.compute_loss(trainer.model, packed).item()
        loss_padded = trainer.compute_loss(trainer.model, padded).item()
    assert math.isclose(loss_packed, loss_padded, rel_tol=1e-5)
    if "reference_free" in dpo:
        assert packed["ref_chosen_logps"].tolist() == [0.0] * 3
        assert abs(loss_packed - math.log(2)) > 1e-3
        return
    # The one precompute pass ran padded (TRL's collator, at init); the packed path gives the same.
    chosen, rejected = trainer.compute_ref_log_probs(trainer.model, packed)
    torch.testing.assert_close(chosen, packed["ref_chosen_logps"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rejected, packed["ref_rejected_logps"], atol=1e-5, rtol=1e-5)
    assert math.isclose(loss_packed, math.log(2), rel_tol=1e-5)  # policy == reference before a step


def test_unsupported_dpo_losses_are_one_clear_error(tmp_path: Path) -> None:
    args = TRLDPOConfig(
        output_dir=str(tmp_path), loss_type=["hinge"], ld_alpha=0.5, report_to="none", bf16=False
    )
    with pytest.raises(ValueError) as error:
        K12DPOTrainer(model=None, args=args, padding_free=True)
    assert str(error.value) == (
        "data.padding_free supports only the sigmoid DPO loss; unsupported: "
        "loss_type=['hinge'] (needs ['sigmoid']), ld_alpha=0.5 (needs None)"
    )
