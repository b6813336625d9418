"""Peak GPU memory of LoRA / QLoRA fine-tuning, estimated from the model's shape alone.

Used by the dry runs to say, before anything is loaded, whether a run fits a card. No torch.

The estimate (bytes) is the sum of
- base weights: 2 bytes per parameter in bf16; with 4-bit NF4 and double quantisation the
  linear layers take 4.127 bits per parameter (4 bits + an 8-bit absmax per 64 weights + a
  32-bit scale per 256 absmax), while embeddings, lm_head and norms are upcast to fp32 by
  PEFT's `prepare_model_for_kbit_training` (4 bytes each);
- LoRA adapters: 16 bytes per trainable parameter (fp32 weight, fp32 gradient, two fp32 AdamW
  moments). An adapter on a d_in x d_out layer has r * (d_in + d_out) parameters;
- activations (Korthikanti et al., 2022, "Reducing Activation Recomputation in Large
  Transformer Models", with flash/SDPA attention so there is no s^2 term): with gradient
  checkpointing, each layer's input (2 * b * s * h bytes) is kept, and one layer at a time is
  recomputed, holding about b * s * (16 h + 6 f) * 2 bytes (q, k, v, attention output, MLP
  intermediates, and the dropout copies of each adapted input); with `train.activation_offload`
  the layers' inputs wait in host memory and only the one being recomputed is on the GPU;
  without checkpointing every layer holds its full set. Eager attention adds
  2 * b * heads * s^2 * 2 bytes per live layer;
- logits: b * s * vocab * 10 bytes (bf16 logits, their fp32 upcast for the loss, and the fp32
  gradient), the largest single term at Qwen's 152k vocabulary, as plain transformers builds
  them. The project's trainers (TRL 1.16's SFT, DPO and ORPO) never do: TRL's fused LM head
  scores tokens in tiles of 4096 x 32768 logits, keeping an fp32 copy of the last hidden states
  and their gradient (b * s * h * 8 bytes) plus one fp32 tile (0.5 GiB);
- a reference model's own memory, where the stage keeps one (see `align_plan.reference_bytes`):
  0 when it is the policy with its adapter disabled, adapter-sized when it is a frozen adapter
  copy;
- the CUDA context and allocator slack: 0.75 GiB plus 5% of the above.

Checked against published figures (tests/train/test_memory.py), the QwenLM/Qwen README,
"Profiling of Memory and Speed" (commit 03cd81f), Qwen-7B on one A100-80G, batch size 1,
flash attention 2, gradient checkpointing, LoRA r=64 on every linear layer, sequences padded
to the length: LoRA 20.1 G at 256 tokens, 23.8 G at 2048, 36.6 G at 8192; Q-LoRA (4-bit base)
13.9 G at 2048. Qwen's Q-LoRA is GPTQ Int4 with fp16 embeddings; ours is NF4 with fp32
embeddings (2.3 GiB more at 7B), so for 4-bit the estimate runs over Qwen's figure by 11% at
2048 tokens and 18% at 8192, where our logits term grows faster than theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GIB = 1 << 30
NF4_BITS = 4 + 8 / 64 + 32 / (64 * 256)
LORA_BYTES_PER_PARAM = 16
CONTEXT_BYTES = int(0.75 * GIB)
SLACK = 0.05
FUSED_TILE = 4096 * 32768  # logits per tile of TRL's fused LM head


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelShape:
        """From a Hugging Face `config.json` of a Llama/Qwen2-style decoder."""
        heads = config["num_attention_heads"]
        return cls(
            hidden=config["hidden_size"],
            layers=config["num_hidden_layers"],
            heads=heads,
            kv_heads=config.get("num_key_value_heads") or heads,
            head_dim=config.get("head_dim") or config["hidden_size"] // heads,
            intermediate=config["intermediate_size"],
            vocab=config["vocab_size"],
            tied=bool(config.get("tie_word_embeddings", False)),
        )

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(d_in, d_out) of each linear projection of one decoder layer."""
        h, q, kv, f = (
            self.hidden,
            self.heads * self.head_dim,
            self.kv_heads * self.head_dim,
            self.intermediate,
        )
        return {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, f),
            "up_proj": (h, f),
            "down_proj": (f, h),
        }

    def linear_params(self) -> int:
        return self.layers * sum(i * o for i, o in self.linear_shapes().values())

    def other_params(self) -> int:
        """Embeddings, lm_head (unless tied), norms and attention biases: kept in bf16."""
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        per_layer = 2 * self.hidden + self.heads * self.head_dim + 2 * self.kv_heads * self.head_dim
        return embeddings + self.layers * per_layer + self.hidden

    def params(self) -> int:
        return self.linear_params() + self.other_params()


# Shapes of the bases we document, so that a dry run needs no download.
KNOWN_SHAPES: dict[str, ModelShape] = {
    "Qwen/Qwen2.5-7B-Instruct": ModelShape(3584, 28, 28, 4, 128, 18944, 152064, False),
    "Qwen/Qwen2.5-7B": ModelShape(3584, 28, 28, 4, 128, 18944, 152064, False),
    "Qwen/Qwen2.5-3B-Instruct": ModelShape(2048, 36, 16, 2, 128, 11008, 151936, True),
    "Qwen/Qwen2.5-1.5B-Instruct": ModelShape(1536, 28, 12, 2, 128, 8960, 151936, True),
    "Qwen/Qwen2.5-0.5B-Instruct": ModelShape(896, 24, 14, 2, 64, 4864, 151936, True),
    "Qwen/Qwen2.5-14B-Instruct": ModelShape(5120, 48, 40, 8, 128, 13824, 152064, False),
}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per term; `total` is the estimated peak."""

    weights: int
    adapters: int
    activations: int
    logits: int
    overhead: int
    lora_params: int
    reference: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.adapters + self.activations + self.logits + self.reference + self.overhead

    def describe(self) -> str:
        names = ("weights", "adapters", "activations", "logits", *(("reference",) if self.reference else ()))
        parts = ", ".join(f"{name} {getattr(self, name) / GIB:.1f}" for name in (*names, "overhead"))
        return f"{self.total / GIB:.1f} GiB ({parts})"


def lora_params(shape: ModelShape, rank: int, targets: list[str]) -> int:
    linears = shape.linear_shapes()
    unknown = sorted(set(targets) - set(linears))
    if unknown:
        raise ValueError(f"unknown LoRA target modules {unknown}; known: {sorted(linears)}")
    return shape.layers * sum(rank * (linears[t][0] + linears[t][1]) for t in targets)


def estimate_memory(
    shape: ModelShape,
    *,
    rank: int,
    targets: list[str],
    quantization: str,
    seq_len: int,
    batch_size: int,
    gradient_checkpointing: bool,
    offload: bool = False,
    attention: str = "sdpa",
    fused_logits: bool = False,
    reference: int = 0,
) -> MemoryEstimate:
    """Peak bytes on one GPU for one micro-batch of `batch_size` sequences of `seq_len` tokens
    (a preference pair is two sequences); `reference` is the reference model's own bytes."""
    if quantization == "4bit":
        weights = int(shape.linear_params() * NF4_BITS / 8) + 4 * shape.other_params()
    else:
        weights = 2 * shape.params()
    n_lora = lora_params(shape, rank, targets)
    tokens = batch_size * seq_len
    one_layer = tokens * (16 * shape.hidden + 6 * shape.intermediate) * 2
    if attention == "eager":
        one_layer += 2 * batch_size * shape.heads * seq_len * seq_len * 2
    if gradient_checkpointing and offload:
        activations = tokens * shape.hidden * 2 + one_layer  # the other layers' inputs wait on the host
    elif gradient_checkpointing:
        activations = shape.layers * tokens * shape.hidden * 2 + one_layer
    else:
        activations = shape.layers * one_layer
    logits = tokens * shape.hidden * 8 + FUSED_TILE * 4 if fused_logits else tokens * shape.vocab * 10
    adapters = n_lora * LORA_BYTES_PER_PARAM
    overhead = CONTEXT_BYTES + int(SLACK * (weights + adapters + activations + logits + reference))
    return MemoryEstimate(weights, adapters, activations, logits, overhead, n_lora, reference)
