"""The speed and memory switches of `train:` that the libraries do not set on their own.

- `liger_kernels`: Liger-Kernel's Triton RMSNorm, RoPE and SwiGLU patched into the loaded base
  before PEFT wraps it. Its fused linear cross-entropy stays off: TRL's trainers already score
  tokens through their own fused LM head (tiles of the logits, never the whole
  tokens x 152k matrix), and Liger's would replace the forward that carries it.
- `activation_offload`: with gradient checkpointing, the only activations kept between forward
  and backward are each decoder layer's input (tokens x hidden, bf16) and the few tensors
  outside the checkpointed layers. `ActivationOffload` moves those to CPU memory as autograd
  saves them and brings each back when backward reaches it, so activation memory stops growing
  with the number of layers. Parameters and small tensors stay where they are: copying the
  152k x 3584 LM head to the host at every step would cost more than it saves.
- `torch_compile` goes to the TrainingArguments as `torch_compile`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from k12tune.config.train import TrainSettings
from k12tune.errors import ConfigError

# Tensors below this size stay on the device: their copies cost more in latency than they free.
MIN_OFFLOAD_BYTES = 1 << 20
LIGER_KERNELS = {"rope": True, "rms_norm": True, "swiglu": True}
LIGER_OFF = {"cross_entropy": False, "fused_linear_cross_entropy": False}


def check_speed(train: TrainSettings) -> None:
    """Fail before any model is loaded when a switch cannot work on this machine."""
    if not train.liger_kernels:
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            "train.liger_kernels: true needs a CUDA GPU (Liger's kernels are Triton GPU kernels) "
            "and this machine has none: set train.liger_kernels=false here"
        )
    try:
        import liger_kernel.transformers  # noqa: F401
    except ImportError:
        raise ConfigError(
            "train.liger_kernels: true needs the liger-kernel package: pip install 'k12tune[gpu]' "
            "(or set train.liger_kernels=false)"
        ) from None


def apply_liger(model: Any) -> None:
    """Patch Liger's layer kernels into `model` (a transformers model, before PEFT)."""
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    _apply_liger_kernel_to_instance(model=model, **LIGER_KERNELS, **LIGER_OFF)


class ActivationOffload:
    """Saved-tensor hooks that park large activations in CPU memory until backward.

    Pinned host memory lets the copies run asynchronously on the GPU's copy engine. `moved`
    counts the tensors parked since the last reset (tests read it)."""

    def __init__(self, min_bytes: int = MIN_OFFLOAD_BYTES) -> None:
        self.min_bytes = min_bytes
        self.moved = 0
        # A tensor saved twice (RMSNorm saves its input for two products) is copied once.
        self._copies: dict[tuple[Any, ...], Any] = {}

    def pack(self, tensor: Any) -> Any:
        import torch

        weight = isinstance(tensor, torch.nn.Parameter) or isinstance(tensor._base, torch.nn.Parameter)
        if weight or tensor.numel() * tensor.element_size() < self.min_bytes:
            return tensor  # a weight (or its transposed view, as matmul saves it) stays
        key = (tensor.data_ptr(), tensor.size(), tensor.stride(), tensor.dtype, tensor.device)
        if key not in self._copies:
            pin = tensor.device.type == "cuda"
            host = torch.empty(tensor.size(), dtype=tensor.dtype, layout=tensor.layout, pin_memory=pin)
            host.copy_(tensor, non_blocking=pin)
            self._copies[key] = (tensor.device, host)
            self.moved += 1
        return self._copies[key]

    @staticmethod
    def unpack(packed: Any) -> Any:
        if isinstance(packed, tuple):
            device, host = packed
            return host.to(device, non_blocking=host.is_pinned())
        return packed

    @contextmanager
    def __call__(self) -> Iterator[None]:
        import torch

        try:
            with torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack):
                yield
        finally:
            self._copies.clear()  # the graph holds the copies it needs; a later pass reuses addresses


class SpeedMixin:
    """Put before the TRL trainer in the bases: runs each loss computation (forward, and with it
    what autograd saves for backward) under `offload` when it is set."""

    offload: ActivationOffload | None = None

    def compute_loss(self, *args: Any, **kwargs: Any) -> Any:
        if self.offload is None:
            return super().compute_loss(*args, **kwargs)  # type: ignore[misc]
        with self.offload():
            return super().compute_loss(*args, **kwargs)  # type: ignore[misc]


def speed_args(train: TrainSettings) -> dict[str, Any]:
    """TrainingArguments for the switches the HF Trainer applies itself."""
    return {"torch_compile": train.torch_compile}


def prepare_model(model: Any, train: TrainSettings) -> None:
    """What must happen to the loaded base before PEFT wraps it."""
    if train.liger_kernels:
        apply_liger(model)


def attach(trainer: Any, train: TrainSettings) -> Any:
    """Switch on the trainer-side means (the trainer's class must include `SpeedMixin`)."""
    trainer.offload = ActivationOffload() if train.activation_offload else None
    return trainer
