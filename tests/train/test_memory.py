"""The memory estimate against published figures (cited in `k12tune.train.memory`)."""

from __future__ import annotations

import pytest

from k12tune.config.train import ALL_LINEAR
from k12tune.train.memory import GIB, KNOWN_SHAPES, ModelShape, estimate_memory, lora_params

# Qwen-7B (v1): hidden 4096, 32 layers, full multi-head attention, MLP width 11008 (its
# `intermediate_size` 22016 is halved in QWenMLP), vocabulary 151,936, untied embeddings.
QWEN_7B_V1 = ModelShape(4096, 32, 32, 32, 128, 11008, 151936, False)

# QwenLM/Qwen README, "Profiling of Memory and Speed" (commit 03cd81f): one A100-80G, batch 1,
# flash attention 2, gradient checkpointing, LoRA r=64 on every linear layer; memory in G.
PUBLISHED = [
    ("none", 256, 20.1),
    ("none", 1024, 21.5),
    ("none", 2048, 23.8),
    ("none", 4096, 29.7),
    ("none", 8192, 36.6),
    ("4bit", 2048, 13.9),
]


@pytest.mark.parametrize(("quantization", "seq_len", "published"), PUBLISHED)
def test_estimate_is_within_15_percent_of_published_figures(quantization, seq_len, published) -> None:
    estimate = estimate_memory(
        QWEN_7B_V1,
        rank=64,
        targets=list(ALL_LINEAR),
        quantization=quantization,
        seq_len=seq_len,
        batch_size=1,
        gradient_checkpointing=True,
    )
    assert abs(estimate.total / GIB - published) / published <= 0.15


def test_shapes_give_the_known_parameter_counts() -> None:
    assert round(QWEN_7B_V1.params() / 1e9, 2) == 7.72
    assert round(KNOWN_SHAPES["Qwen/Qwen2.5-7B-Instruct"].params() / 1e9, 2) == 7.62  # 7.61B published
    # LoRA r=16 on every projection of Qwen2.5-7B: 40,370,176 parameters (PEFT prints the same).
    assert lora_params(KNOWN_SHAPES["Qwen/Qwen2.5-7B-Instruct"], 16, list(ALL_LINEAR)) == 40_370_176


def test_more_tokens_more_memory_and_4bit_less() -> None:
    shape = KNOWN_SHAPES["Qwen/Qwen2.5-7B-Instruct"]

    def total(**kw) -> int:
        args = dict(rank=16, targets=list(ALL_LINEAR), quantization="none", seq_len=2048, batch_size=1)
        args.update(kw)
        return estimate_memory(shape, gradient_checkpointing=True, **args).total

    assert total(batch_size=2) > total() > total(seq_len=1024)
    assert total(quantization="4bit") < total() - 6 * GIB
    no_checkpointing = estimate_memory(
        shape,
        rank=16,
        targets=list(ALL_LINEAR),
        quantization="none",
        seq_len=2048,
        batch_size=1,
        gradient_checkpointing=False,
    )
    assert no_checkpointing.total > total()


def test_unknown_target_module_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown LoRA target modules"):
        lora_params(QWEN_7B_V1, 8, ["c_attn"])
