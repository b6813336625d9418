"""The speed and memory switches of `train:`, each handed to the library that does it well.

- `liger_kernels`: Liger-Kernel's Triton RMSNorm, RoPE and SwiGLU patched into the loaded base
  before PEFT wraps it. Its fused linear cross-entropy stays off: TRL's trainers already score
  tokens through their own fused LM head (tiles of the logits, never the whole
  tokens x 152k matrix), and Liger's would replace the forward that carries it.
- `activation_offload`: TRL's activation offloading (torchtune's design: saved activations go
  to pinned host memory on a side CUDA stream, overlapping with compute; parameters, small
  tensors and the LM head stay). With gradient checkpointing the saved activations are only
  each decoder layer's input, so activation memory stops growing with the number of layers.
  SFT and DPO take it as TRL's `activation_offloading` argument; ORPO (TRL's experimental
  trainer has no such argument) through `offload_context` in its training step, as TRL's
  trainers do. TRL's implementation needs a CUDA device.
- `torch_compile` goes to the TrainingArguments.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from k12tune.config.train import TrainSettings
from k12tune.errors import ConfigError

LIGER_KERNELS = {"rope": True, "rms_norm": True, "swiglu": True}
LIGER_OFF = {"cross_entropy": False, "fused_linear_cross_entropy": False}


def check_speed(train: TrainSettings) -> None:
    """Fail before any model is loaded when a switch cannot work on this machine."""
    wanted = [key for key in ("liger_kernels", "activation_offload") if getattr(train, key)]
    if not wanted:
        return
    import torch

    if not torch.cuda.is_available():
        why = {
            "liger_kernels": "Liger's kernels are Triton GPU kernels",
            "activation_offload": "activations are offloaded from a CUDA device over a side stream",
        }
        raise ConfigError(
            "; ".join(f"train.{key}: true needs a CUDA GPU ({why[key]})" for key in wanted)
            + f"; this machine has none: set {' and '.join(f'train.{key}=false' for key in wanted)}"
        )
    if train.liger_kernels:
        try:
            import liger_kernel.transformers  # noqa: F401
        except ImportError:
            raise ConfigError(
                "train.liger_kernels: true needs the liger-kernel package: pip install 'k12tune[gpu]' "
                "(or set train.liger_kernels=false)"
            ) from None


def prepare_model(model: Any, train: TrainSettings) -> None:
    """What must happen to the loaded base before PEFT wraps it."""
    if train.liger_kernels:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance

        _apply_liger_kernel_to_instance(model=model, **LIGER_KERNELS, **LIGER_OFF)


def speed_args(train: TrainSettings, *, offload_arg: bool = True) -> dict[str, Any]:
    """TrainingArguments for the switches TRL and the HF Trainer apply themselves;
    `offload_arg` False for a TRL config without `activation_offloading` (ORPO's)."""
    args: dict[str, Any] = {"torch_compile": train.torch_compile}
    if offload_arg:
        args["activation_offloading"] = train.activation_offload
    return args


def offload_context(model: Any, enabled: bool) -> AbstractContextManager[Any]:
    """TRL's activation-offloading context for `model`'s training steps, or a no-op."""
    if not enabled:
        return nullcontext()
    from trl.models.activation_offloading import get_act_offloading_ctx_manager

    return get_act_offloading_ctx_manager(model=model)
