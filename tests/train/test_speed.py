"""The speed switches of `train:`: activation offload changes where activations wait, never the
result; packing changes the batch shape, never a sequence's loss; switches that cannot work on
this machine are refused before anything loads."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from pydantic import ValidationError

from k12tune.config.train import TrainSettings
from k12tune.errors import ConfigError
from k12tune.train.runlog import TRAIN_LOG, read_log
from k12tune.train.sft import run_sft
from k12tune.train.speed import ActivationOffload

from .test_sft import sft_config

LAYERS = 2  # the tiny base's decoder layers


def lora_model(base: Path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, attn_implementation="sdpa", dtype=torch.float32)
    assert model.config.num_hidden_layers == LAYERS
    add_fused_lm_head(model)  # as every trainer of the project scores tokens
    config = LoraConfig(
        r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False
    )
    model = get_peft_model(model, config)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    return model.train()


def loss_and_grads(model, ids, offload: ActivationOffload | None):
    model.zero_grad()
    if offload is None:
        loss = model(input_ids=ids, labels=ids, fused_lm_head=True).loss
    else:
        with offload():
            loss = model(input_ids=ids, labels=ids, fused_lm_head=True).loss
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), grads


def test_offload_moves_the_checkpointed_layer_inputs_and_changes_nothing(tiny_base: Path) -> None:
    import torch

    model = lora_model(tiny_base)
    ids = torch.randint(3, 300, (2, 48), generator=torch.Generator().manual_seed(1))
    hidden = model.config.hidden_size
    # Only tensors of a whole layer input (2 x 48 x hidden fp32) or larger move.
    offload = ActivationOffload(min_bytes=2 * 48 * hidden * 4)
    loss, grads = loss_and_grads(model, ids, None)
    loss_off, grads_off = loss_and_grads(model, ids, offload)
    # Each checkpointed layer's input and the final norm's input (saved twice by the norm, copied
    # once); the layers' insides are recomputed by the checkpoint, never saved, and the fused LM
    # head keeps only the shifted 2 x 47 positions, just under the threshold.
    assert offload.moved == LAYERS + 1
    torch.testing.assert_close(loss_off, loss, rtol=0, atol=0)
    assert grads_off.keys() == grads.keys() and len(grads) == LAYERS * 3 * 2
    for name in grads:
        torch.testing.assert_close(grads_off[name], grads[name], rtol=0, atol=0)


def test_parameters_and_small_tensors_stay_put() -> None:
    import torch

    offload = ActivationOffload(min_bytes=1024)
    weight = torch.nn.Parameter(torch.ones(64, 64))
    assert offload.pack(weight) is weight
    transposed = weight.t()  # what a linear layer saves for its backward
    assert offload.pack(transposed) is transposed
    small = torch.ones(16)
    assert offload.pack(small) is small
    large = torch.arange(512, dtype=torch.float32)
    packed = offload.pack(large)
    assert isinstance(packed, tuple) and packed[1] is not large
    assert offload.pack(large) is packed  # saved twice, copied once
    torch.testing.assert_close(ActivationOffload.unpack(packed), large)
    assert offload.moved == 1


def test_an_sft_run_with_offload_logs_the_same_losses(
    tiny_base: Path, memorisable_data: Path, tmp_path: Path
) -> None:
    logs = []
    for offload in (False, True):
        out = tmp_path / f"offload_{offload}"
        cfg = sft_config(
            tiny_base,
            memorisable_data,
            out,
            max_steps=10,
            gradient_checkpointing=True,
            activation_offload=offload,
        )
        trainer, _ = run_sft(cfg)
        assert (trainer.offload is not None) is offload
        logs.append([row["loss"] for row in read_log(out / TRAIN_LOG) if "loss" in row])
    assert len(logs[0]) == 2
    assert logs[1] == pytest.approx(logs[0], rel=1e-5)


def test_offload_without_checkpointing_is_refused() -> None:
    with pytest.raises(ValidationError, match="activation_offload: true needs gradient_checkpointing: true"):
        TrainSettings(activation_offload=True, gradient_checkpointing=False)


def test_liger_without_a_gpu_is_a_clear_error(
    tiny_base: Path, memorisable_data: Path, tmp_path: Path
) -> None:
    cfg = sft_config(tiny_base, memorisable_data, tmp_path / "out", liger_kernels=True)
    with pytest.raises(ConfigError, match=r"train\.liger_kernels: true needs a CUDA GPU"):
        run_sft(cfg)
    assert not (tmp_path / "out" / "manifest.json").exists()


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
