"""Benchmark of LoRA fine-tuning: TRL's documented baseline and k12tune's configured path, side by
side in one run, with an ablation of each of ours' means.

    python bench/bench_train.py                          # CUDA: Qwen2.5-7B shape; CPU: tiny model
    python bench/bench_train.py --model tiny --steps 4   # the CPU smoke run (about a minute)
    python bench/bench_train.py --write-lengths          # re-measure bench/sample_lengths.json

Not a timed test: run it by hand and record the figures in bench/RESULTS.md.

Model. `--model qwen2.5-7b` (default on CUDA) builds a randomly initialised Qwen2ForCausalLM of
Qwen2.5-7B-Instruct's published config (`QWEN2_5_7B_INSTRUCT` below) directly on the GPU in
bf16, nothing downloaded; the rows that load from disk (both 4-bit columns, through
`from_pretrained` with bitsandbytes NF4 as users do, and ours' DPO and ORPO, through the
project's stage) share one copy written to a temporary folder (about 15 GB) on first use.
`--model tiny` (default on CPU) is `k12tune.tiny.build_tiny_base`: the same architecture and
template, tiny sizes.

Data. Synthetic ChatML conversations (one user turn, one answer, Qwen2.5's template with its
default system prompt) whose total token lengths follow the histogram of the real sample data in
bench/sample_lengths.json (measured from ../shared/data/sft by `--write-lengths`; that folder does
not travel to the GPU machine, the JSON does), and whose answer share of each length is the
measured one of its length bin. The contents are random words of the bench tokenizer (a byte-level
BPE with Qwen2.5's template and special tokens, trained on random letter words), chosen so that
each word is exactly one token: a conversation's token count is what the histogram asked for.
Labels are assistant-only in ours (the project's setting); the baseline keeps TRL's default
(every token), which costs the same compute per token.

Rows. One per configuration; every SFT row trains `--warmup-steps` untimed steps, then `--steps`
timed steps, each of one micro-batch (no gradient accumulation): `--micro-batch` padded
conversations, or `--packed-micro-batch` packed rows of `--seq-len` tokens (1, as the project
configures it):
- trained tokens/s: non-padding tokens that went through forward and backward in the timed steps
  (prompt and answer tokens alike: the label mask changes no FLOP), divided by the timed steps'
  wall time (from each step's start to its end, after the optimizer; CUDA synchronised);
- peak memory: on CUDA `torch.cuda.max_memory_allocated` from before the model is built to the end
  of the row (weights included); on CPU the process's peak RSS (VmHWM, reset through
  /proc/self/clear_refs before the row), which includes the Python runtime and libraries;
- MFU: model FLOPs of the timed steps / their time / `--peak-tflops` (989 TFLOP/s: H100/H200
  dense bf16); n/a on CPU. The LoRA FLOPs of one step, with T the step's non-padding tokens,
  s_i the length of each sequence in it (packed sequences count apart), L layers, d_att =
  heads * head_dim, N_frozen the frozen matmul weights (every linear projection of every layer,
  plus the untied LM head; the embedding is a lookup, no FLOPs), N_lora the adapter parameters
  r * (d_in + d_out) summed over the adapted projections:
      forward   2 * N_frozen * T + 2 * N_lora * T + 2 * L * d_att * sum_i s_i^2
      backward  2 * N_frozen * T  (activation gradients through frozen weights; no weight
                                   gradients for them)
              + 4 * N_lora * T    (LoRA's activation and weight gradients)
              + 4 * L * d_att * sum_i s_i^2
      total     4 * N_frozen * T + 6 * N_lora * T + 6 * L * d_att * sum_i s_i^2
  The attention terms are causal (half of the full QK^T and AV products) and count real tokens
  only. Recomputation by gradient checkpointing is not counted (it is hardware, not model, FLOPs).
- x baseline: tokens/s and peak memory over those of the baseline of the same group (LoRA, QLoRA,
  longest context, DPO, ORPO) measured in this run.

Preference rows (`preference_rows`): DPO and ORPO steps on pairs made of the same synthetic
conversations (chosen: the answer; rejected: another conversation's answer), TRL's DPOTrainer
(reference by adapter toggling) and trl.experimental.orpo.ORPOTrainer with their defaults as
baselines, the project's train_dpo / train_orpo trainers (`k12tune.train.align.build`) as ours.
This is the place where padding-free preference batches, built in another branch, will show.

Baseline: what a user writes from TRL's documentation: `SFTTrainer` with a PEFT `LoraConfig(r=16,
lora_alpha=32, lora_dropout=0.05, target_modules="all-linear")`, bf16 (fp32 on CPU), SDPA, one
conversation per row padded to the longest in the batch, no packing, `max_length` = --seq-len,
TRL's defaults otherwise (which include gradient checkpointing). QLoRA baseline: the same with
`BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=bf16)`.

Ours: `k12tune.train.sft.make_trainer` with an `SFTConfig` at the project defaults (packing
best-fit decreasing with per-sequence position ids, so attention keeps the sequences apart; gradient
checkpointing; assistant-only loss), and the ablation: each means switched against ours one at a
time. A means this machine cannot run is a row "unavailable: <reason>", never a number. Chunked
loss is not one of ours' means: TRL 1.16's SFTTrainer scores tokens through its fused, tiled LM
head (`trl.trainer.utils.add_fused_lm_head`) in both columns, never building the full logits.

Correctness: the parity check trains ours and the baseline on the same conversations with the same
objective (assistant-only loss, the same LoRA rank, alpha and init, no dropout, the same learning
rate and schedule) for --parity-steps steps, each over all of the conversations as one batch, so
that packing changes the layout of a step but not which tokens it sees. It compares the first
step's training loss (same weights: the two layouts must compute the same objective) and the mean
per-token loss of the trained models on the same padded evaluation batch (the updates must agree).
Tolerance, relative: 1e-3 in fp32 (only the summation order differs), 2e-2 in bf16 (packed and
padded attention round differently). The check also asks that training moved the evaluation loss
by more than twice the gap between the columns and by at least 0.1%, or equality would prove
nothing.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import itertools
import json
import os
import platform
import random
import shlex
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LENGTHS_FILE = ROOT / "bench" / "sample_lengths.json"
SHARED_SFT = ROOT.parent / "shared" / "data" / "sft"
QWEN_ID = "Qwen/Qwen2.5-7B-Instruct"
# Qwen2.5-7B-Instruct's published config.json (the fields that shape the model).
QWEN2_5_7B_INSTRUCT: dict[str, Any] = {
    "architectures": ["Qwen2ForCausalLM"],
    "hidden_act": "silu",
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-06,
    "tie_word_embeddings": False,
    "initializer_range": 0.02,
    "use_sliding_window": False,
    "torch_dtype": "bfloat16",
}
PEAK_TFLOPS = 989.0  # H100/H200 SXM dense bf16
CAP_GIB = 24.0
BIN = 64  # tokens per bin of the length histogram
PARITY_CONVERSATIONS = 8
PARITY_LR = 1e-3
ROW_KEYS = (
    "baseline", "ours", "no-packing", "no-checkpointing", "offload", "liger", "compile",
    "flash-attn", "qlora", "longest", "dpo", "orpo",
)  # fmt: skip


@dataclass
class Row:
    """One configuration's figures; `unavailable` holds the reason when it could not run here.
    `group` names the baseline its ratios are against (lora, qlora, longest, dpo, orpo); `failed`
    the error of a row that raised."""

    name: str
    group: str = "lora"
    seq_len: int | None = None
    tokens_per_s: float | None = None
    peak_bytes: int | None = None
    mfu: float | None = None
    unavailable: str | None = None
    baseline: bool = False
    failed: str | None = None


@dataclass(frozen=True)
class Means:
    """Ours' switches; the defaults are the project's configured path."""

    packing: bool = True
    gradient_checkpointing: bool = True
    activation_offload: bool = False
    liger_kernels: bool = False
    torch_compile: bool = False
    attn: str = "sdpa"
    quantization: str = "none"


# ---------------------------------------------------------------- lengths of the real data


def sample_conversations() -> Iterator[list[dict[str, str]]]:
    """The real SFT samples as chat messages (alpaca: instruction and input as the user turn;
    sharegpt tool calls: function_call answers as assistant, observations as user)."""
    roles = {"human": "user", "gpt": "assistant", "function_call": "assistant", "observation": "user"}
    for path in sorted(SHARED_SFT.iterdir()):
        if path.suffix == ".jsonl":
            records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
        else:
            records = json.loads(path.read_text(encoding="utf-8"))
        for r in records:
            if "messages" in r:
                yield [{"role": m["role"], "content": m["content"]} for m in r["messages"]]
            elif "conversations" in r:
                yield [{"role": roles[m["from"]], "content": m["value"]} for m in r["conversations"]]
            elif "prompt" in r:
                yield [
                    {"role": "user", "content": r["prompt"]},
                    {"role": "assistant", "content": r["response"]},
                ]
            else:
                user = r["instruction"] + (f"\n{r['input']}" if r.get("input") else "")
                yield [{"role": "user", "content": user}, {"role": "assistant", "content": r["output"]}]


def measuring_tokenizer() -> tuple[Any, str]:
    """Qwen2.5's own tokenizer when it is in the local Hugging Face cache; otherwise the tiny
    tokenizer (vocabulary 2,000, trained on the samples' texts), which splits rare Chinese
    characters into bytes and so overstates lengths."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(QWEN_ID, local_files_only=True), QWEN_ID
    except OSError:
        from k12tune.tiny import build_tokenizer

        texts = ["\n".join(m["content"] for m in c) for c in sample_conversations()]
        return build_tokenizer(texts), "k12tune.tiny.build_tokenizer (vocab 2000, trained on the samples)"


def write_lengths(path: Path) -> dict[str, Any]:
    """Histogram of the samples' templated token lengths in bins of BIN tokens, each bin with its
    mean answer share (tokens of assistant contents and their <|im_end|> over all tokens)."""
    tokenizer, name = measuring_tokenizer()
    bins: dict[int, list[float]] = {}
    for messages in sample_conversations():
        total = len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])
        answer = sum(len(tokenizer.encode(m["content"])) + 1 for m in messages if m["role"] == "assistant")
        bins.setdefault(total // BIN, []).append(min(1.0, answer / total))
    histogram = [
        {"lo": b * BIN, "hi": (b + 1) * BIN, "count": len(s), "answer_share": round(sum(s) / len(s), 3)}
        for b, s in sorted(bins.items())
    ]
    result = {
        "source": "../shared/data/sft/*",
        "tokenizer": name,
        "conversations": sum(h["count"] for h in histogram),
        "bin_tokens": BIN,
        "histogram": histogram,
    }
    # One bin per line: a small file whose diffs stay readable.
    rows = ",\n".join(f"  {json.dumps(h)}" for h in histogram)
    head = json.dumps({k: v for k, v in result.items() if k != "histogram"})[:-1]
    path.write_text(f'{head}, "histogram": [\n{rows}\n]}}\n', encoding="utf-8")
    return result


# ---------------------------------------------------------------- synthetic data


def bench_texts(seed: int = 0) -> list[str]:
    """A corpus of random letter words: the bench tokenizer learns each as one token."""
    rng = random.Random(seed)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 7))) for _ in range(800)]
    return [" ".join(rng.choices(words, k=50)) for _ in range(3000)]


def word_pool(tokenizer: Any) -> list[int]:
    """Token ids that are one space-led word and come back as themselves when re-tokenised, so a
    text of n of them is n tokens."""
    pool = []
    for token, i in tokenizer.get_vocab().items():
        word = token.startswith("Ġ") and token[1:].isalpha() and token[1:].isascii()
        if word and tokenizer.encode(tokenizer.decode([i]), add_special_tokens=False) == [i]:
            pool.append(i)
    return sorted(pool)


def synth_conversations(tokenizer: Any, lengths: dict[str, Any], tokens: int, seed: int) -> list[dict]:
    """Conversations drawn from the length histogram until they hold `tokens` tokens."""
    rng = random.Random(seed)
    pool = word_pool(tokenizer)
    overhead = template_overhead(tokenizer)
    bins = lengths["histogram"]
    rows, total = [], 0
    while total < tokens:
        b = rng.choices(bins, weights=[h["count"] for h in bins])[0]
        length = max(overhead + 2, rng.randrange(b["lo"], b["hi"]))
        rows.append(conversation(tokenizer, pool, rng, length - overhead, b["answer_share"]))
        total += length
    return rows


def template_overhead(tokenizer: Any) -> int:
    """Tokens of a conversation with an empty question and answer (system prompt, turn markers)."""
    empty = [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}]
    return len(tokenizer.apply_chat_template(empty, tokenize=True, return_dict=True)["input_ids"])


def conversation(tokenizer: Any, pool: list[int], rng: random.Random, content: int, share: float) -> dict:
    """One user turn and one answer of `content` random-word tokens between them."""
    answer = min(content - 1, max(1, round(share * content)))
    user = content - answer
    return {
        "messages": [
            {"role": "user", "content": tokenizer.decode(rng.choices(pool, k=user))},
            {"role": "assistant", "content": tokenizer.decode(rng.choices(pool, k=answer))},
        ]
    }


# ---------------------------------------------------------------- models


class Base:
    """The benchmarked base: its tokenizer and fresh copies of its model (each row trains its own)."""

    def __init__(self, name: str, workdir: Path) -> None:
        from k12tune.tiny import build_tiny_base, build_tokenizer

        self.name, self.workdir = name, workdir
        self.folder: Path | None = None
        if name == "tiny":
            self.folder = build_tiny_base(workdir / "tiny", bench_texts())
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        else:
            self.tokenizer = build_tokenizer(bench_texts())

    def build(self, attn: str) -> Any:
        """The 7B shape, random, in bf16, initialised on the GPU."""
        import torch
        from transformers import Qwen2Config, Qwen2ForCausalLM

        config = Qwen2Config.from_dict(
            {
                **QWEN2_5_7B_INSTRUCT,
                "pad_token_id": self.tokenizer.pad_token_id,
                "eos_token_id": self.tokenizer.eos_token_id,
            }
        )
        torch.manual_seed(0)
        with torch.device("cuda"):
            return Qwen2ForCausalLM._from_config(config, dtype=torch.bfloat16, attn_implementation=attn)

    def checkpoint(self) -> Path:
        """An on-disk copy for `from_pretrained` (the tiny base; the 7B for 4-bit, written once)."""
        if self.folder is None:
            self.folder = self.workdir / "qwen2.5-7b"
            model = self.build("sdpa")
            model.save_pretrained(self.folder)
            self.tokenizer.save_pretrained(self.folder)
            del model
            free_memory()
        return self.folder

    def baseline_model(self, quantization: str) -> Any:
        """As a user loads it from the documentation: bf16 (fp32 on CPU), SDPA, NF4 for QLoRA."""
        import torch
        from transformers import AutoModelForCausalLM

        if self.name != "tiny" and quantization == "none":
            return self.build("sdpa")
        kwargs: dict[str, Any] = {
            "dtype": torch.bfloat16 if torch.cuda.is_available() else torch.float32,
            "attn_implementation": "sdpa",
        }
        if quantization == "4bit":
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
            )
        return AutoModelForCausalLM.from_pretrained(self.checkpoint(), **kwargs)

    def ours_model(self, cfg: Any) -> Any:
        """Through the project's loading (`load_base`; for the GPU-built 7B its speed preparation)."""
        from k12tune.train.model import load_base, use_bf16
        from k12tune.train.speed import check_speed, prepare_model

        if self.name != "tiny" and cfg.model.quantization == "none":
            check_speed(cfg.train)
            model = self.build(cfg.model.attn_implementation)
            prepare_model(model, cfg.train)
            return model
        model_cfg = cfg.model.model_copy(update={"base": str(self.checkpoint())})
        return load_base(model_cfg, cfg.train, bf16=use_bf16(cfg.train))


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- trainers


def baseline_trainer(
    base: Base,
    train: Any,
    out: Path,
    *,
    seq_len: int,
    micro_batch: int,
    steps: int,
    quantization: str = "none",
    lora: dict[str, Any] | None = None,
    **overrides: Any,
) -> Any:
    """TRL's documented LoRA recipe; `lora` and `overrides` only for the parity check."""
    import torch
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=str(out),
        max_length=seq_len,
        per_device_train_batch_size=micro_batch,
        max_steps=steps,
        bf16=torch.cuda.is_available(),
        report_to="none",
        save_strategy="no",
        **overrides,
    )
    peft = LoraConfig(
        **(lora or {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05}),
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    model = base.baseline_model(quantization)
    return SFTTrainer(
        model=model, args=args, train_dataset=train, processing_class=base.tokenizer, peft_config=peft
    )


def ours_config(out: Path, means: Means, *, seq_len: int, micro_batch: int, steps: int, **train: Any) -> Any:
    """The project's SFTConfig at its defaults, with `means` and the bench's sizes."""
    from k12tune.config.sft import SFTConfig

    return SFTConfig.model_validate(
        {
            "model": {"base": QWEN_ID, "attn_implementation": means.attn, "quantization": means.quantization},
            "data": {"max_length": seq_len, "packing": means.packing},
            "train": {
                "max_steps": steps,
                "per_device_batch_size": micro_batch,
                "gradient_accumulation_steps": 1,
                "gradient_checkpointing": means.gradient_checkpointing,
                "activation_offload": means.activation_offload,
                "liger_kernels": means.liger_kernels,
                "torch_compile": means.torch_compile,
                "report_to": [],
                "save_steps": 10**9,
                "logging_steps": steps,
                **train,
            },
            "out_dir": str(out),
        }
    )


def ours_trainer(base: Base, train: Any, cfg: Any, lora: dict[str, Any] | None = None) -> Any:
    from k12tune.train.sft import make_trainer

    if lora:
        cfg = cfg.model_copy(update={"lora": cfg.lora.model_copy(update=lora)})
    return make_trainer(cfg, base.ours_model(cfg), base.tokenizer, train)


# ---------------------------------------------------------------- measuring


def sequence_lengths(inputs: dict[str, Any]) -> list[int]:
    """Real (non-padding) lengths of the sequences in a batch: per row from the attention masks
    (a preference batch's chosen and rejected rows, prompt included, not the prompt alone), or, in
    a padding-free packed batch, between the restarts of the position ids."""
    masks = [v for k, v in inputs.items() if k.endswith("attention_mask") and not k.startswith("prompt")]
    if masks:
        return [int(n) for mask in masks for n in mask.sum(dim=1).tolist()]
    positions = inputs["position_ids"].flatten().tolist()
    starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
    return [b - a for a, b in itertools.pairwise(starts)]


class Meter:
    """Times each optimizer step (CUDA synchronised) and records its batch's sequence lengths."""

    def __init__(self, trainer: Any) -> None:
        from transformers import TrainerCallback

        self.lengths: list[list[int]] = []
        self.seconds: list[float] = []
        meter, compute_loss = self, trainer.compute_loss

        def counted(model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            meter.lengths.append(sequence_lengths(inputs))
            return compute_loss(model, inputs, *args, **kwargs)

        class Clock(TrainerCallback):
            def on_step_begin(self, *_: Any, **__: Any) -> None:
                synchronize()
                meter.started = time.perf_counter()

        class Stop(TrainerCallback):
            def on_step_end(self, *_: Any, **__: Any) -> None:
                synchronize()
                meter.seconds.append(time.perf_counter() - meter.started)

        self.started = 0.0
        trainer.compute_loss = counted
        quiet(trainer)
        trainer.add_callback(Clock())
        trainer.add_callback(Stop())


def quiet(trainer: Any) -> Any:
    """Without tqdm the Trainer prints every log line; the bench prints its own table."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")


def read_peak() -> int:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def step_flops(shape: Any, n_lora: int, lengths: list[int]) -> float:
    """The LoRA FLOPs of one step (the formula of the module docstring)."""
    tokens, squares = sum(lengths), sum(n * n for n in lengths)
    n_frozen = shape.linear_params() + shape.vocab * shape.hidden
    d_att = shape.heads * shape.head_dim
    return 4 * n_frozen * tokens + 6 * n_lora * tokens + 6 * shape.layers * d_att * squares


def measure(
    name: str,
    build: Callable[[], Any],
    *,
    group: str,
    seq_len: int,
    warmup: int,
    peak_tflops: float | None,
    baseline: bool = False,
) -> Row:
    """Build the trainer (model included) and train; figures of the steps after `warmup`. A row
    that raises (out of memory, a kernel that fails) becomes a `failed` row, its traceback on
    stderr, so that the other rows of a GPU run still come back."""
    from k12tune.train.memory import ModelShape

    free_memory()
    reset_peak()
    try:
        trainer = build()
        meter = Meter(trainer)
        trainer.train()
    except Exception as error:  # reported in the table; the next row frees what it held
        traceback.print_exc()
        failed = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"
        return Row(name, group, seq_len, failed=failed, baseline=baseline)
    peak = read_peak()
    timed = range(warmup, len(meter.seconds))
    seconds = sum(meter.seconds[i] for i in timed)
    lengths = [n for i in timed for n in meter.lengths[i]]
    mfu = None
    if peak_tflops:
        model = trainer.model
        shape = ModelShape.from_config(model.get_base_model().config.to_dict())
        n_lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
        flops = sum(step_flops(shape, n_lora, meter.lengths[i]) for i in timed)
        mfu = flops / seconds / (peak_tflops * 1e12)
    del trainer
    free_memory()
    return Row(name, group, seq_len, sum(lengths) / seconds, peak, mfu, baseline=baseline)


# ---------------------------------------------------------------- rows


def unavailable(means: Means) -> str | None:
    """Why ours with `means` cannot run on this machine, or None. Liger, offload and 4-bit ask
    the stages' own checks (the sentence a user of train_sft would get)."""
    import torch

    from k12tune.config.train import ModelConfig, TrainSettings
    from k12tune.errors import ConfigError
    from k12tune.train.model import check_quantization
    from k12tune.train.speed import check_speed

    cuda = torch.cuda.is_available()
    try:
        check_speed(
            TrainSettings(
                liger_kernels=means.liger_kernels,
                activation_offload=means.activation_offload,
                gradient_checkpointing=means.gradient_checkpointing,
            )
        )
        check_quantization(ModelConfig(quantization=means.quantization))
    except ConfigError as error:
        return str(error)
    if means.attn == "flash_attention_2" and not cuda:
        return "flash-attn needs CUDA; no CUDA here"
    if means.attn == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        return "flash-attn is not installed"
    if means.torch_compile and not cuda:
        return "torch.compile is benchmarked on CUDA only (Inductor took over a minute per tiny row here)"
    return None


ABLATION: dict[str, tuple[str, Means]] = {
    "no-packing": ("ours, packing off", Means(packing=False)),
    "no-checkpointing": ("ours, gradient checkpointing off", Means(gradient_checkpointing=False)),
    "offload": ("ours, + activation offload", Means(activation_offload=True)),
    "liger": ("ours, + Liger kernels", Means(liger_kernels=True)),
    "compile": ("ours, + torch.compile", Means(torch_compile=True)),
    "flash-attn": ("ours, attention flash_attention_2", Means(attn="flash_attention_2")),
}


def sft_rows(base: Base, data: Any, args: argparse.Namespace, keys: set[str], work: Path) -> list[Row]:
    """Baseline, ours and the ablation at --seq-len, then QLoRA's pair."""
    sizes = {
        "seq_len": args.seq_len,
        "micro_batch": args.micro_batch,
        "steps": args.warmup_steps + args.steps,
    }
    timing = {"seq_len": args.seq_len, "warmup": args.warmup_steps, "peak_tflops": args.peak_tflops}
    rows: list[Row] = []

    def ours(name: str, means: Means, group: str = "lora") -> Row:
        reason = unavailable(means)
        if reason:
            return Row(name, group, args.seq_len, unavailable=reason)
        packed = {"micro_batch": args.packed_micro_batch} if means.packing else {}
        cfg = ours_config(work / "ours", means, **{**sizes, **packed})
        return measure(name, lambda: ours_trainer(base, data, cfg), group=group, **timing)

    if "baseline" in keys:
        build = lambda: baseline_trainer(base, data, work / "baseline", **sizes)  # noqa: E731
        rows.append(measure("baseline (TRL docs)", build, group="lora", baseline=True, **timing))
    if "ours" in keys:
        rows.append(ours("ours", Means()))
    rows += [ours(name, means) for key, (name, means) in ABLATION.items() if key in keys]
    if "qlora" in keys:
        reason = unavailable(Means(quantization="4bit"))
        if reason:
            rows.append(
                Row("QLoRA baseline (TRL docs)", "qlora", args.seq_len, unavailable=reason, baseline=True)
            )
        else:
            build = lambda: baseline_trainer(base, data, work / "baseline", quantization="4bit", **sizes)  # noqa: E731
            rows.append(measure("QLoRA baseline (TRL docs)", build, group="qlora", baseline=True, **timing))
        rows.append(ours("QLoRA ours", Means(quantization="4bit"), "qlora"))
    return rows


def longest_rows(base: Base, args: argparse.Namespace, work: Path) -> list[Row]:
    """The longest single conversation one step of each column trains under a CAP_GIB cap:
    doubling from 2,048 tokens while a step fits, then bisecting to 512 tokens; each trial is
    one step on a fresh model, an out-of-memory error meaning it does not fit."""
    import torch

    names = (
        f"baseline, longest context under {CAP_GIB:g} GiB",
        f"ours, longest context under {CAP_GIB:g} GiB",
    )
    if not torch.cuda.is_available():
        return [
            Row(
                n,
                "longest",
                unavailable="the memory cap is a CUDA allocator setting; no CUDA here",
                baseline=i == 0,
            )
            for i, n in enumerate(names)
        ]
    total = torch.cuda.get_device_properties(0).total_memory
    limit = QWEN2_5_7B_INSTRUCT["max_position_embeddings"] if base.name != "tiny" else 4096
    rows = []
    for i, name in enumerate(names):

        def trial(length: int, ours: bool = i == 1) -> int | None:
            from datasets import Dataset

            pool, rng = word_pool(base.tokenizer), random.Random(0)
            content = length - template_overhead(base.tokenizer)
            data = Dataset.from_list([conversation(base.tokenizer, pool, rng, content, 0.5)])
            sizes = {"seq_len": length, "micro_batch": 1, "steps": 1}
            torch.cuda.set_per_process_memory_fraction(CAP_GIB * (1 << 30) / total)
            try:
                free_memory()
                reset_peak()
                if ours:
                    trainer = ours_trainer(base, data, ours_config(work / "ours", Means(), **sizes))
                else:
                    trainer = baseline_trainer(base, data, work / "baseline", **sizes)
                trainer.train()
                return read_peak()
            except torch.OutOfMemoryError:
                return None
            except RuntimeError as error:  # cuBLAS and Triton report a failed allocation their own way
                if "out of memory" in str(error) or "ALLOC_FAILED" in str(error):
                    return None
                raise
            finally:
                trainer = None
                free_memory()
                torch.cuda.set_per_process_memory_fraction(1.0)

        try:
            rows.append(Row(name, "longest", *search(trial, limit), baseline=i == 0))
        except Exception as error:  # reported in the table, as in `measure`
            traceback.print_exc()
            rows.append(
                Row(name, "longest", failed=f"{type(error).__name__}: {error}"[:200], baseline=i == 0)
            )
    return rows


def search(fits: Callable[[int], int | None], limit: int) -> tuple[int, None, int | None]:
    """(longest length that fits, no tokens/s, its peak memory): doubling from 2,048 while `fits`
    returns a peak, then bisecting the gap to 512 tokens."""
    longest, peak, length = 0, None, 2048
    while length <= limit and (found := fits(length)) is not None:
        longest, peak, length = length, found, length * 2
    high = min(length, limit + 1)
    while high - longest > 512:
        middle = (longest + high) // 2
        if (found := fits(middle)) is not None:
            longest, peak = middle, found
        else:
            high = middle
    return longest, None, peak


def synth_pairs(conversations: list[dict], seed: int) -> list[dict]:
    """Preference pairs in prepare_data's format from the synthetic conversations: the question as
    prompt, the answer as chosen, another conversation's answer as rejected."""
    rng = random.Random(seed)
    answers = [c["messages"][1] for c in conversations]
    return [
        {
            "id": f"p{i}",
            "source": "bench",
            "lang": "en",
            "prompt": [c["messages"][0]],
            "chosen": [c["messages"][1]],
            "rejected": [rng.choice(answers)],
        }
        for i, c in enumerate(conversations)
    ]


def preference_rows(
    base: Base, pairs: list[dict], args: argparse.Namespace, keys: set[str], work: Path
) -> list[Row]:
    """DPO and ORPO: TRL's DPOTrainer (reference by adapter toggling) and
    trl.experimental.orpo.ORPOTrainer with their defaults and the documented LoRA as baselines;
    ours is the project's stage (`k12tune.train.align.build` on the same pairs written as
    prepare_data's output, starting from the bare base). Trained tokens: the non-padding tokens of
    the policy's rows (prompt + chosen, prompt + rejected); the reference forward is not counted.
    MFU is not given for these rows (the formula above covers SFT only)."""
    from datasets import Dataset

    from k12tune.manifest import write_manifest

    folder = work / "pref_proc"
    folder.mkdir(exist_ok=True)
    lines = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs)
    (folder / "pref_train.jsonl").write_text(lines, encoding="utf-8")
    write_manifest(
        folder,
        stage="prepare_data",
        config={},
        inputs={},
        outputs=["pref_train.jsonl"],
        counts={},
        libraries=(),
    )
    data = Dataset.from_list([{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs])
    steps = args.warmup_steps + args.steps
    timing = {"seq_len": args.seq_len, "warmup": args.warmup_steps, "peak_tflops": None}
    rows = []
    for kind in ("dpo", "orpo"):
        if kind not in keys:
            continue
        name = kind.upper()
        baseline = lambda kind=kind: pref_baseline(base, kind, data, work / f"{kind}_base", args, steps)  # noqa: E731
        rows.append(measure(f"baseline {name} (TRL defaults)", baseline, group=kind, baseline=True, **timing))
        for free, label in ((False, f"ours {name}"), (True, f"ours {name}, padding-free")):
            ours = lambda kind=kind, free=free: pref_ours(  # noqa: E731
                base, kind, folder, work / f"{kind}_ours", args, steps, padding_free=free
            )
            rows.append(measure(label, ours, group=kind, **timing))
    return rows


def pref_baseline(base: Base, kind: str, data: Any, out: Path, args: argparse.Namespace, steps: int) -> Any:
    """TRL's own preference trainer with its defaults, the documented LoRA, bf16 on CUDA."""
    import torch
    from peft import LoraConfig

    if kind == "dpo":
        from trl import DPOConfig as Config
        from trl import DPOTrainer as Trainer
    else:
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
        from trl.experimental.orpo import ORPOConfig as Config
        from trl.experimental.orpo import ORPOTrainer as Trainer
    config = Config(
        output_dir=str(out),
        max_length=args.seq_len,
        per_device_train_batch_size=args.micro_batch,
        max_steps=steps,
        bf16=torch.cuda.is_available(),
        report_to="none",
        save_strategy="no",
    )
    peft = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    trainer = Trainer(
        model=base.baseline_model("none"),
        args=config,
        train_dataset=data,
        processing_class=base.tokenizer,
        peft_config=peft,
    )
    return quiet(trainer)


def pref_ours(
    base: Base,
    kind: str,
    folder: Path,
    out: Path,
    args: argparse.Namespace,
    steps: int,
    *,
    padding_free: bool = False,
) -> Any:
    """The project's train_dpo / train_orpo trainer at its defaults, on the pairs in `folder`;
    `padding_free`: each micro-batch's chosen and rejected sequences packed into one row."""
    from k12tune.config.align import DPOConfig, ORPOConfig
    from k12tune.train.align import build

    body = {
        "model": {"base": str(base.checkpoint())},
        "start": {"sft_adapter": None},
        "data": {
            "train_file": str(folder / "pref_train.jsonl"),
            "val_file": None,
            "max_length": args.seq_len,
            "prefer_chinese_ratio": None,
            "padding_free": padding_free,
        },
        "train": {
            "max_steps": steps,
            "per_device_batch_size": args.micro_batch,
            "gradient_accumulation_steps": 1,
            "report_to": [],
            "save_steps": 10**9,
            "logging_steps": steps,
        },
        "out_dir": str(out),
    }
    cfg = DPOConfig.model_validate(body) if kind == "dpo" else ORPOConfig.model_validate(body)
    return quiet(build(cfg).trainer)


# ---------------------------------------------------------------- correctness


def eval_loss(model: Any, batch: dict[str, Any]) -> float:
    """Mean per-token loss over the batch's label tokens."""
    import torch

    model.eval()
    with torch.no_grad():
        device = next(model.parameters()).device
        return float(model(**{k: v.to(device) for k, v in batch.items()}).loss)


def parity(base: Base, conversations: list[dict], args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Ours and the baseline on the same objective and data (module docstring); PASS or FAIL."""
    import torch
    from datasets import Dataset

    # The shortest of the first few: padding them to the longest stays cheap on a CPU.
    shortest = sorted(conversations[: 8 * PARITY_CONVERSATIONS], key=lambda c: len(str(c)))
    data = Dataset.from_list(shortest[:PARITY_CONVERSATIONS])
    steps, n = args.parity_steps, len(data)
    lora = {"r": 16, "lora_alpha": 16, "lora_dropout": 0.0}
    schedule = {
        "learning_rate": PARITY_LR,
        "lr_scheduler_type": "linear",
        "warmup_steps": 0,
        "logging_steps": 1,
    }
    torch.manual_seed(0)
    trainer = quiet(baseline_trainer(
        base, data, work / "p_base", seq_len=args.seq_len, micro_batch=n, steps=steps, lora=lora,
        assistant_only_loss=True, **schedule,
    ))  # fmt: skip
    trainer.train()
    batch = padded_batch(trainer.train_dataset, base.tokenizer.pad_token_id)
    losses = {"baseline": (trainer.state.log_history[0]["loss"], eval_loss(trainer.model, batch))}
    with trainer.model.disable_adapter():
        untrained = eval_loss(trainer.model, batch)
    trainer = None
    free_memory()
    cfg = ours_config(
        work / "p_ours", Means(), seq_len=args.seq_len, micro_batch=n, steps=steps,
        learning_rate=PARITY_LR, lr_scheduler="linear", warmup_ratio=0.0, logging_steps=1,
    )  # fmt: skip
    torch.manual_seed(0)
    trainer = quiet(ours_trainer(base, data, cfg, lora={"r": 16, "alpha": 16, "dropout": 0.0}))
    trainer.train()
    losses["ours"] = (trainer.state.log_history[0]["loss"], eval_loss(trainer.model, batch))
    trainer = None
    free_memory()
    tolerance = 1e-3 if not torch.cuda.is_available() else 2e-2
    (first_b, final_b), (first_o, final_o) = losses["baseline"], losses["ours"]
    close = all(abs(a - b) <= tolerance * abs(b) for a, b in ((first_o, first_b), (final_o, final_b)))
    moved = untrained - final_b > max(2 * abs(final_o - final_b), 1e-3 * untrained)
    return {
        "steps": steps,
        "conversations": n,
        "untrained_eval_loss": untrained,
        "baseline_first_loss": first_b,
        "ours_first_loss": first_o,
        "baseline_eval_loss": final_b,
        "ours_eval_loss": final_o,
        "relative_tolerance": tolerance,
        "result": "PASS" if close and moved else "FAIL",
    }


def padded_batch(dataset: Any, pad: int) -> dict[str, Any]:
    """The tokenised conversations (TRL's prepared dataset: input ids, labels -100 outside the
    answers) as one right-padded batch."""
    import torch

    longest = max(len(ids) for ids in dataset["input_ids"])
    ids, mask, labels = [], [], []
    for row, label in zip(dataset["input_ids"], dataset["labels"], strict=True):
        gap = longest - len(row)
        ids.append(row + [pad] * gap)
        mask.append([1] * len(row) + [0] * gap)
        labels.append(label + [-100] * gap)
    return {
        "input_ids": torch.tensor(ids),
        "attention_mask": torch.tensor(mask),
        "labels": torch.tensor(labels),
    }


# ---------------------------------------------------------------- report


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in (
        "torch",
        "transformers",
        "trl",
        "peft",
        "accelerate",
        "liger-kernel",
        "bitsandbytes",
        "flash-attn",
    ):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def ratio(value: float | None, reference: float | None) -> str:
    return f"{value / reference:.2f}x" if value and reference else "—"


def table(rows: list[Row]) -> list[str]:
    """Markdown table; ratios against the baseline row of the same group."""
    lines = [
        "| row | seq | trained tokens/s | x baseline | peak memory GiB | x baseline | MFU |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    reference = {r.group: r for r in rows if r.baseline and not (r.unavailable or r.failed)}
    for r in rows:
        if r.unavailable or r.failed:
            why = f"unavailable: {r.unavailable}" if r.unavailable else f"failed: {r.failed}"
            lines.append(f"| {r.name} | {r.seq_len or '—'} | {why} | — | — | — | — |")
            continue
        ref = reference.get(r.group)
        speed = f"{r.tokens_per_s:,.0f}" if r.tokens_per_s else "—"
        memory = f"{r.peak_bytes / (1 << 30):.2f}" if r.peak_bytes else "—"
        mfu = f"{100 * r.mfu:.1f}%" if r.mfu is not None else "n/a"
        lines.append(
            f"| {r.name} | {r.seq_len} | {speed} | {ratio(r.tokens_per_s, ref and ref.tokens_per_s)} "
            f"| {memory} | {ratio(r.peak_bytes, ref and ref.peak_bytes)} | {mfu} |"
        )
    return lines


def report(rows: list[Row], check: dict[str, Any] | None, meta: dict[str, Any]) -> str:
    lines = [f"{key}: {value}" for key, value in meta.items()]
    lines += ["", *table(rows)]
    if check:
        lines += [
            "",
            f"loss parity ({check['conversations']} conversations, {check['steps']} full-batch steps, "
            f"relative tolerance {check['relative_tolerance']:g}): first-step loss baseline "
            f"{check['baseline_first_loss']:.6f} ours {check['ours_first_loss']:.6f}; eval loss untrained "
            f"{check['untrained_eval_loss']:.6f}, baseline {check['baseline_eval_loss']:.6f} ours "
            f"{check['ours_eval_loss']:.6f}: {check['result']}",
        ]
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None) -> argparse.Namespace:
    import torch

    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("qwen2.5-7b", "tiny"), default="qwen2.5-7b" if cuda else "tiny")
    parser.add_argument("--steps", type=int, default=20 if cuda else 8, help="timed steps per row")
    parser.add_argument("--warmup-steps", type=int, default=3 if cuda else 2, help="untimed steps first")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument(
        "--micro-batch", type=int, default=2, help="rows per step of the padded rows: conversations"
    )
    parser.add_argument(
        "--packed-micro-batch",
        type=int,
        default=1,
        help="rows per step of the packed rows (the project's setting: 1; TRL joins a micro-batch's "
        "packs into one sequence, whose sdpa mask is dense)",
    )
    parser.add_argument(
        "--rows", default="all", help=f"comma-separated, from {','.join(ROW_KEYS)}, parity; or all"
    )
    parser.add_argument("--parity-steps", type=int, default=4)
    parser.add_argument("--peak-tflops", type=float, default=PEAK_TFLOPS if cuda else None)
    parser.add_argument("--lengths", type=Path, default=LENGTHS_FILE)
    parser.add_argument("--write-lengths", action="store_true", help="measure ../shared/data/sft and exit")
    parser.add_argument("--json", action="store_true", help="also print one JSON line of the results")
    parser.add_argument("--out", type=Path, help="write the header and table (markdown) here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not cuda:
        args.peak_tflops = None
    keys = set(ROW_KEYS) | {"parity"} if args.rows == "all" else set(args.rows.split(","))
    unknown = keys - set(ROW_KEYS) - {"parity"}
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}")
    args.keys = keys
    return args


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: the table is the output
    args = parse(argv)
    if args.write_lengths:
        written = write_lengths(args.lengths)
        print(f"{args.lengths}: {written['conversations']} conversations, tokenizer {written['tokenizer']}")
        return 0
    import torch
    import transformers
    from datasets import Dataset

    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    lengths = json.loads(args.lengths.read_text(encoding="utf-8"))
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    meta = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": device,
        "model": args.model,
        "versions": " ".join(f"{k}=={v}" for k, v in versions().items()),
        "command": shlex.join(["python", "bench/bench_train.py", *(sys.argv[1:] if argv is None else argv)]),
        "lengths": f"{args.lengths.name} (tokenizer: {lengths['tokenizer']})",
        "peak memory": "torch.cuda.max_memory_allocated" if torch.cuda.is_available() else "peak RSS (VmHWM)",
    }
    print("\n".join(f"{k}: {v}" for k, v in meta.items()), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        work = Path(tmp)
        base = Base(args.model, work)
        needed = int(1.3 * (args.warmup_steps + args.steps) * args.micro_batch * args.seq_len)
        conversations = synth_conversations(base.tokenizer, lengths, needed, args.seed)
        data = Dataset.from_list(conversations)
        check = parity(base, conversations, args, work) if "parity" in args.keys else None
        rows = sft_rows(base, data, args, args.keys, work)
        if "longest" in args.keys:
            rows += longest_rows(base, args, work)
        if args.keys & {"dpo", "orpo"}:
            rows += preference_rows(base, synth_pairs(conversations, args.seed), args, args.keys, work)
    text = report(rows, check, meta)
    print("\n" + text.split("\n\n", 1)[1], end="")
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    if args.json:
        print(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows], "parity": check}))
    failed = any(r.failed for r in rows) or (check is not None and check["result"] != "PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
