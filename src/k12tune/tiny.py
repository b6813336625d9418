"""A tiny Qwen2-architecture base model, built offline, for tests and the demo pipeline.

Nothing can be downloaded here, yet every stage must run its real code path: hub-style loading
with `from_pretrained`, Qwen2.5's chat template (TRL recognises it by its exact text and swaps in
its training variant for assistant-only loss), Qwen's special tokens with pad `<|endoftext|>`
distinct from end-of-turn `<|im_end|>`, and a vocabulary padded past the tokenizer's size as in
the real checkpoints (151,665 tokens, 152,064 embedding rows). Only the sizes are tiny: random
weights, a byte-level BPE tokenizer trained in-process on the given texts with Qwen2's
pre-tokenizer, a few layers. Built deterministically from `seed`.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path

SPECIAL_TOKENS: tuple[str, ...] = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
PAD_TOKEN, EOS_TOKEN = "<|endoftext|>", "<|im_end|>"
# Qwen2's pre-tokenizer split (from its tokenizer.json): letters, single digits, punctuation
# runs and newlines stay apart, so "\n" after a role name is its own token as in the real one.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def qwen2_5_chat_template() -> str:
    """Qwen2.5-Instruct's chat template, byte for byte (default system prompt included)."""
    return resources.files("k12tune").joinpath("templates/qwen2_5.jinja").read_text(encoding="utf-8")


def build_tokenizer(texts: Iterable[str], vocab_size: int = 2000):
    """A fast tokenizer with Qwen2.5's special tokens, template and pre-tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.normalizer = normalizers.NFC()
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in (EOS_TOKEN, PAD_TOKEN)],
        chat_template=qwen2_5_chat_template(),
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )


def build_tiny_base(
    out_dir: str | Path,
    texts: Iterable[str],
    *,
    vocab_size: int = 2000,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate_size: int = 128,
    seed: int = 0,
) -> Path:
    """Write a tiny Qwen2ForCausalLM (safetensors) and its tokenizer to `out_dir`."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    tokenizer = build_tokenizer(texts, vocab_size)
    padded_vocab = -(-len(tokenizer) // 64) * 64
    config = Qwen2Config(
        vocab_size=padded_vocab,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        # Qwen's 0.02 assumes width 3584; at width 64 it caps every logit near 1.3, so even a
        # memorised answer could not get a confident prediction.
        initializer_range=0.2,
        bos_token_id=tokenizer.convert_tokens_to_ids(PAD_TOKEN),
        eos_token_id=tokenizer.convert_tokens_to_ids(EOS_TOKEN),
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD_TOKEN),
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.convert_tokens_to_ids(EOS_TOKEN), tokenizer.convert_tokens_to_ids(PAD_TOKEN)],
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD_TOKEN),
    )
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
