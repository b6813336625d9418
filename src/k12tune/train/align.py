"""train_orpo and train_dpo: preference alignment of the SFT policy with a LoRA adapter, on TRL.

Both read `data_proc/pref_train.jsonl` (and `pref_val.jsonl`), start from the SFT result
(`start.py`), feed the pairs in the language mix of `data.prefer_chinese_ratio`
(`pref_trainers.LanguageMixMixin`) and publish to `out_dir` (default `outputs/align/`): the
adapter, the tokenizer, `config.yaml`, `rejected_pairs.jsonl`, `train_log.jsonl`,
`loss_curve.png` (loss, reward margin, reward accuracy), then `manifest.json` last.
With `data.padding_free` each batch is one packed row without pad tokens
(`pref_packing.py`): the same losses and gradients for less compute on pairs of uneven length.

Reward metrics, as TRL logs them: DPO's reward of an answer is beta * (log pi(y|x) -
log pi_ref(y|x)), summed over the answer tokens (log pi_ref = 0 when reference-free); ORPO's is
beta * the mean answer-token log-probability. `rewards/margins` is the batch mean of chosen
minus rejected reward, `rewards/accuracies` the share of pairs whose chosen reward is higher.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from k12tune.config.align import AlignConfig, DPOConfig, ORPOConfig
from k12tune.errors import DataError
from k12tune.stack import ADAPTER_WEIGHTS
from k12tune.train.model import load_tokenizer, use_bf16
from k12tune.train.pref_data import PairFile, read_pairs, rejects_jsonl, to_dataset
from k12tune.train.runlog import TRAIN_LOG, make_log_callback
from k12tune.train.runner import Built, check_inputs, common_args, summary_lines, train_and_publish
from k12tune.train.speed import speed_args
from k12tune.train.start import check_sft_adapter, load_policy

ORPO_STAGE, DPO_STAGE = "train_orpo", "train_dpo"


def language_mix(cfg: AlignConfig) -> Any:
    from k12tune.train.pref_trainers import LanguageMix

    d = cfg.data
    if d.prefer_chinese_ratio is None:
        return None
    edges = (d.max_length // 8, d.max_length // 4, d.max_length // 2)
    return LanguageMix(d.prefer_chinese_ratio, d.when_exhausted, cfg.train.seed, edges)


def load_pair_files(cfg: AlignConfig, tokenizer: Any, files: list[Path]) -> list[PairFile]:
    pairs = [
        read_pairs(
            path, tokenizer, max_length=cfg.data.max_length, min_answer_tokens=cfg.data.min_answer_tokens
        )
        for path in files
    ]
    if pairs[0].kept == 0:
        raise DataError(
            f"{files[0]}: no usable pair among {pairs[0].read} read "
            f"(rejected: {pairs[0].counts()['rejected']}); see data.max_length and data.min_answer_tokens"
        )
    return pairs


def build(cfg: ORPOConfig | DPOConfig) -> Built:
    """The configured TRL trainer (policy loaded, adapter attached, pairs tokenized)."""
    files = check_inputs(cfg)
    sft_folder = check_sft_adapter(cfg)
    out = Path(cfg.out_dir)
    bf16 = use_bf16(cfg.train)
    tokenizer = load_tokenizer(cfg.model)
    pairs = load_pair_files(cfg, tokenizer, files)
    train = to_dataset(pairs[0])
    val = to_dataset(pairs[1]) if len(pairs) > 1 and pairs[1].kept else None
    model, peft_config, start = load_policy(cfg, sft_folder, bf16=bf16)
    common = {
        **common_args(cfg, out, bf16=bf16, has_val=val is not None),
        **speed_args(cfg.train, offload_arg=isinstance(cfg, DPOConfig)),
        "max_length": cfg.data.max_length,
    }
    kwargs: dict[str, Any] = {
        "model": model,
        "train_dataset": train,
        "eval_dataset": val,
        "processing_class": tokenizer,
        "peft_config": peft_config,
        "callbacks": [make_log_callback(out / TRAIN_LOG)],
    }
    if isinstance(cfg, ORPOConfig):
        from k12tune.train.pref_trainers import K12ORPOTrainer
        from k12tune.train.pref_trainers import ORPOArgs as TRLConfig

        args = TRLConfig(**common, beta=cfg.orpo.beta, remove_unused_columns=False)
        trainer = K12ORPOTrainer(
            args=args,
            length_penalty=cfg.orpo.length_penalty,
            padding_free=cfg.data.padding_free,
            activation_offload=cfg.train.activation_offload,
            **kwargs,
        )
    else:
        from trl import DPOConfig as TRLConfig

        from k12tune.train.pref_trainers import K12DPOTrainer

        args = TRLConfig(
            **common,
            beta=cfg.dpo.beta,
            precompute_ref_log_probs=cfg.dpo.precompute_ref_log_probs and not cfg.dpo.reference_free,
        )
        trainer = K12DPOTrainer(
            args=args,
            reference_free=cfg.dpo.reference_free,
            padding_free=cfg.data.padding_free,
            **kwargs,
        )
    trainer.language_mix = language_mix(cfg)
    names = ("train", "val")
    counts: dict[str, Any] = {"start": start}
    counts.update({f"{names[i]}_pairs": p.counts() for i, p in enumerate(pairs)})
    # The SFT weights are an input too: eval and export check that the adapter they merge
    # before this one is still the one this run started from.
    inputs = files + ([sft_folder / ADAPTER_WEIGHTS] if sft_folder is not None else [])
    return Built(trainer, inputs, counts, {"rejected_pairs.jsonl": rejects_jsonl(pairs)})


def run_alignment(cfg: ORPOConfig | DPOConfig) -> tuple[Any, dict[str, Any]]:
    stage, method = (ORPO_STAGE, "ORPO") if isinstance(cfg, ORPOConfig) else (DPO_STAGE, "DPO")
    return train_and_publish(
        cfg, stage=stage, out_dir=cfg.out_dir, title=f"{method} of {cfg.model.base}", build=lambda: build(cfg)
    )


def train_orpo(cfg: ORPOConfig) -> dict[str, Any]:
    return run_alignment(cfg)[1]


def train_dpo(cfg: DPOConfig) -> dict[str, Any]:
    return run_alignment(cfg)[1]


def summarise(cfg: ORPOConfig | DPOConfig, summary: dict[str, Any], seconds: float) -> str:
    stage = ORPO_STAGE if isinstance(cfg, ORPOConfig) else DPO_STAGE
    lines = summary_lines(stage, cfg.out_dir, summary, seconds)
    lines.insert(1, f"  start: {summary['start']}")
    for name in ("train", "val"):
        c = summary.get(f"{name}_pairs")
        if c:
            lines.append(
                f"  {name} pairs: {c['read']} read, {c['kept']} kept {c['lang']}, "
                f"rejected {c['rejected'] or 0} "
                f"(listed in {Path(cfg.out_dir) / 'rejected_pairs.jsonl'})"
            )
    return "\n".join(lines)
