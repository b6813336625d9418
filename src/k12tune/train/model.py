"""Loading the base model and tokenizer for the training stages, and the LoRA config.

Heavy libraries are imported inside the functions, so that dry runs never load them. bitsandbytes
is imported only when 4-bit is asked for, after checking that CUDA exists: without it the user
gets one sentence naming the config key, not a stack trace from inside a library.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from k12tune.config.train import LoraSettings, ModelConfig, TrainSettings
from k12tune.errors import ConfigError
from k12tune.tiny import PAD_TOKEN
from k12tune.train.speed import check_speed, prepare_model

log = logging.getLogger(__name__)


def use_bf16(train: TrainSettings) -> bool:
    """bf16 mixed precision: as configured, or with `auto` when the GPU supports it."""
    import torch

    if train.bf16 == "auto":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return train.bf16 == "true"


def check_quantization(cfg: ModelConfig) -> None:
    """Fail early and clearly when 4-bit cannot work on this machine."""
    if cfg.quantization != "4bit":
        return
    for sharding in ("DEEPSPEED", "FSDP"):
        if os.environ.get(f"ACCELERATE_USE_{sharding}", "").lower() == "true":
            raise ConfigError(
                f"model.quantization: 4bit loads a whole quantised copy per GPU, which {sharding} "
                "sharding cannot split: use configs/accelerate/ddp.yaml (or single_gpu.yaml) for "
                "QLoRA, or model.quantization=none with ZeRO/FSDP"
            )
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            "model.quantization: 4bit (QLoRA) needs a CUDA GPU: bitsandbytes NF4 has no CPU training "
            "path, and this machine has no GPU. Use model.quantization=none here."
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError(
            "model.quantization: 4bit needs bitsandbytes: pip install -r requirements.txt "
            "(or pip install 'k12tune[gpu]')"
        ) from None


def load_tokenizer(cfg: ModelConfig) -> Any:
    """The base's tokenizer, with a pad token distinct from the end-of-turn token: with pad equal
    to `<|im_end|>` the collator would mask every end of turn and the model would never learn
    to stop (huggingface/trl#1623)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        cfg.base, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code
    )
    if tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.eos_token:
        if PAD_TOKEN not in tokenizer.get_vocab():
            raise ConfigError(
                f"the tokenizer of {cfg.base} has no pad token distinct from its end-of-turn token "
                f"{tokenizer.eos_token!r}, and no {PAD_TOKEN!r} to use instead"
            )
        tokenizer.pad_token = PAD_TOKEN
    return tokenizer


def pretrained_kwargs(cfg: ModelConfig, dtype: Any) -> dict[str, Any]:
    """`from_pretrained` keyword arguments every stage loads a base with: the pinned revision,
    remote code only when asked, safetensors only, and NF4 with double quantisation and bf16
    compute (one whole copy on this process's GPU) when `cfg.quantization` is 4bit."""
    import torch

    check_quantization(cfg)
    kwargs: dict[str, Any] = {
        "revision": cfg.revision,
        "trust_remote_code": cfg.trust_remote_code,
        "attn_implementation": cfg.attn_implementation,
        "dtype": dtype,
        "use_safetensors": True,
    }
    if cfg.quantization == "4bit":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
        kwargs["dtype"] = torch.bfloat16
    return kwargs


def load_base(cfg: ModelConfig, train: TrainSettings, *, bf16: bool) -> Any:
    """The base model for training: bf16 (or fp32 on CPU), or NF4 prepared for k-bit training,
    with the kernels `train` asks for patched in (before PEFT wraps it)."""
    import torch
    from transformers import AutoModelForCausalLM

    check_speed(train)
    kwargs = pretrained_kwargs(cfg, torch.bfloat16 if bf16 else torch.float32)
    model = AutoModelForCausalLM.from_pretrained(cfg.base, **kwargs)
    if cfg.quantization == "4bit":
        from peft import prepare_model_for_kbit_training

        checkpointing = train.gradient_checkpointing
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    prepare_model(model, train)
    return model


def lora_config(lora: LoraSettings) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
