"""What a trained adapter folder means: the base and the adapters to apply to it, in order.

Evaluation and export both start from a folder such as `outputs/align` and must rebuild exactly
the model that was trained. That is not always "base + this adapter":
- a train_sft adapter applies to the bare base;
- an alignment adapter trained with `start.mode: merge` applies to the base with the SFT adapter
  merged in, so the stack is base + SFT + alignment;
- one trained with `start.mode: continue` (or from the bare base) is complete on its own.
The stages' manifests and resolved `config.yaml` say which; `resolve_stack` reads them and checks
that an SFT adapter merged underneath is still the one the alignment run started from (its
weights are hashed into the alignment manifest).

`load_stack` builds the model with PEFT without resizing the embedding: lm-eval's own `peft=`
path shrinks Qwen's padded 152,064-row embedding to the tokenizer's 151,665 tokens
(EleutherAI/lm-evaluation-harness#2748), so base-versus-adapter comparisons made that way would
differ by the resize as well as by the adapter.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from k12tune.config.train import ModelConfig
from k12tune.digest import ALGORITHM, LABELS, file_digest
from k12tune.errors import ConfigError, DataError
from k12tune.manifest import MANIFEST, digest_algorithm, verify_manifest

log = logging.getLogger(__name__)

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_STAGES = ("train_sft", "train_orpo", "train_dpo")


@dataclass(frozen=True)
class Adapter:
    folder: Path
    stage: str
    config: dict[str, Any]  # the stage's resolved config.yaml
    manifest: dict[str, Any]

    @property
    def quantization(self) -> str:
        return self.config["model"]["quantization"]

    @property
    def digest(self) -> str:
        """The algorithm of the file digests in this adapter's manifest."""
        return digest_algorithm(self.manifest, self.folder / MANIFEST)


@dataclass(frozen=True)
class Stack:
    """A base model and the adapters applied to it, first to last (none: the bare base)."""

    model: ModelConfig
    adapters: tuple[Adapter, ...] = ()

    @property
    def trained_4bit(self) -> bool:
        return any(a.quantization == "4bit" for a in self.adapters)

    def describe(self) -> str:
        return " + ".join([self.model.base, *(f"{a.folder} ({a.stage})" for a in self.adapters)])


def read_stage(folder: Path) -> str:
    """The training stage that finished `folder`, from its manifest."""
    if not (folder / "adapter_config.json").is_file():
        raise ConfigError(f"{folder} holds no adapter (no adapter_config.json): train it first")
    path = folder / MANIFEST
    if not path.is_file():
        raise DataError(f"{path} is missing: {folder} is not a finished training output; re-run its stage")
    stage = orjson.loads(path.read_bytes()).get("stage")
    if stage not in ADAPTER_STAGES:
        raise DataError(f"{path}: stage {stage!r} wrote no adapter (expected one of {ADAPTER_STAGES})")
    return stage


def read_adapter(folder: Path) -> Adapter:
    stage = read_stage(folder)
    manifest = verify_manifest(folder, stage)
    config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    return Adapter(folder=folder, stage=stage, config=config, manifest=manifest)


def resolve_stack(folder: str | Path) -> Stack:
    """The stack that reproduces the model trained into `folder`."""
    top = read_adapter(Path(folder))
    model = ModelConfig.model_validate(top.config["model"])
    if top.stage == "train_sft":
        return Stack(model, (top,))
    from k12tune.config.align import DPOConfig, ORPOConfig
    from k12tune.train.start import start_mode

    align = (ORPOConfig if top.stage == "train_orpo" else DPOConfig).model_validate(top.config)
    if start_mode(align) != "merge":
        return Stack(model, (top,))
    below = resolve_stack(align.start.sft_adapter)
    if below.model.base != model.base:
        raise ConfigError(
            f"{top.folder} was trained on {model.base!r} but its SFT adapter {below.adapters[-1].folder} "
            f"on {below.model.base!r}"
        )
    weights = below.adapters[-1].folder / ADAPTER_WEIGHTS
    recorded = top.manifest["inputs"].get(str(weights))
    algorithm = top.digest
    if recorded is not None and recorded != file_digest(weights, algorithm):
        raise DataError(
            f"{weights} changed after {top.stage} started from it ({LABELS[algorithm]} differs from "
            f"{top.folder / MANIFEST}): the alignment adapter only fits the SFT model it was "
            f"trained on; re-run {top.stage}"
        )
    return Stack(model, (*below.adapters, top))


def resolve_stack_on(folder: str | Path, model: ModelConfig) -> Stack:
    """`resolve_stack`, rebuilt on `model` (its revision, kernel and loading settings) after
    checking that the adapter was trained on that base."""
    stack = resolve_stack(folder)
    if stack.model.base != model.base:
        raise ConfigError(
            f"{folder} was trained on {stack.model.base!r}, but model.base is {model.base!r}: an adapter "
            "is only meaningful on its own base; set model.base to the one it was trained on"
        )
    return Stack(model, stack.adapters)


def weight_hashes(stack: Stack, algorithm: str = ALGORITHM) -> dict[str, str]:
    """The digest of each adapter's weights, keyed by path: what a later stage checks to know
    that a result was computed from these very adapters (compared in the algorithm of the
    manifest that recorded them)."""
    paths = [a.folder / ADAPTER_WEIGHTS for a in stack.adapters]
    return {str(path): file_digest(path, algorithm) for path in paths}


def apply_adapters(model: Any, adapters: tuple[Adapter, ...], *, merge: bool) -> Any:
    """`model` with every adapter active at once (their updates add up, as merging them one
    after the other would), then merged into the weights when `merge`."""
    if not adapters:
        return model
    from peft import PeftModel

    names = [f"a{i}" for i in range(len(adapters))]
    peft_model = PeftModel.from_pretrained(model, str(adapters[0].folder), adapter_name=names[0])
    for name, adapter in zip(names[1:], adapters[1:], strict=True):
        peft_model.load_adapter(str(adapter.folder), adapter_name=name)
    peft_model.base_model.set_adapter(names)
    return peft_model.merge_and_unload(adapter_names=names) if merge else peft_model


def load_base_model(model_cfg: ModelConfig, dtype: Any, device: str) -> Any:
    """The base for inference (eval, export): `dtype` on `device` (4-bit ignores both)."""
    from transformers import AutoModelForCausalLM

    from k12tune.train.model import pretrained_kwargs

    kwargs = pretrained_kwargs(model_cfg, dtype)
    if "device_map" not in kwargs:
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(model_cfg.base, **kwargs)
    return model.eval()


def load_stack(stack: Stack, dtype: Any, device: str, *, merge: bool) -> Any:
    return apply_adapters(load_base_model(stack.model, dtype, device), stack.adapters, merge=merge)


def load_stack_tokenizer(stack: Stack) -> Any:
    """The tokenizer the last adapter was trained with (saved beside it), else the base's."""
    from transformers import AutoTokenizer

    source = stack.adapters[-1].folder if stack.adapters else stack.model.base
    return AutoTokenizer.from_pretrained(
        str(source),
        revision=None if stack.adapters else stack.model.revision,
        trust_remote_code=stack.model.trust_remote_code,
    )


def release_memory() -> None:
    """Return a model's memory before the next one is loaded (eval's runs one after another,
    export's reference then its reload): two copies of a 7B do not fit where one does."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def torch_dtype(name: str, device: str) -> Any:
    """`auto`: bf16 on a GPU that has it, else float32 (CPUs run bf16 matmuls slowly)."""
    import torch

    if name == "auto":
        cuda = device.startswith("cuda") and torch.cuda.is_available()
        return torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, name)


def default_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
