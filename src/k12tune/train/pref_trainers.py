"""TRL's preference trainers with what k12tune adds on top, each a small override:

- `LanguageMixMixin`: the training order comes from the data stage's `MixedBucketSampler`, so
  each epoch fed to the trainer holds `prefer_chinese_ratio` Chinese pairs with the length
  buckets spread evenly; the HF Trainer calls its `set_epoch` every epoch (a new shuffle).
- `K12ORPOTrainer`: the length-penalised ORPO loss of `pref_losses.py`, with the NLL on the
  answer only; log-probs through TRL's fused LM head (as its DPO does), so the
  (rows x tokens x 152k) logits are never built, about 5.6 GiB at two rows of 2048 tokens,
  which is what lets 16-bit ORPO fit 24 GB; a clear error instead of TRL's silent NaN; and
  `train.activation_offload` through the offloading context TRL's own trainers use.
- `K12DPOTrainer`: `reference_free`: reference log-probabilities of zero, fed through TRL's own
  precomputed-reference path, so no reference forward runs and the rest of TRL's loss and
  metrics stay untouched.
- `padding_free` (both): the batch is one packed row without pad tokens (`pref_packing.py`);
  TRL 1.16's own DPO switch is a no-op, so ours replaces the collator after TRL built its own
  (TRL's pad-token setup and its padded pass for `precompute_ref_log_probs` stay as they are).
  Packed DPO computes the sigmoid loss only and logs TRL's reward and log-prob metrics and
  num_tokens, not entropy, logits/* or mean_token_accuracy.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from accelerate.utils import is_peft_model

# The ORPO API we rely on is pinned (trl>=1.16,<1.17 in pyproject.toml); no warning per run.
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
from trl import DPOTrainer
from trl.experimental.orpo import ORPOConfig as ORPOArgs
from trl.experimental.orpo import ORPOTrainer
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import add_fused_lm_head, use_adapter

from k12tune.data.mix import MixedBucketSampler
from k12tune.train.pref_losses import orpo_terms
from k12tune.train.pref_packing import MODEL_KEYS, PackedPairs, is_packed, packed_logps
from k12tune.train.speed import offload_context

log = logging.getLogger(__name__)

__all__ = ["K12DPOTrainer", "K12ORPOTrainer", "LanguageMix", "ORPOArgs"]

LANG_COLUMN = "lang"
LENGTH_COLUMN = "pair_tokens"


@dataclass(frozen=True)
class LanguageMix:
    zh_ratio: float
    when_exhausted: Literal["stop", "cycle", "continue"]
    seed: int
    length_edges: tuple[int, ...]


class LanguageMixMixin:
    """Put before the TRL trainer in the bases. `language_mix` None keeps TRL's random order."""

    language_mix: LanguageMix | None = None
    pair_sampler: MixedBucketSampler | None = None

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        if self.language_mix is None:
            return super()._get_train_sampler(train_dataset)  # type: ignore[misc]
        # The dataset passed in has lost its unused columns; the rows are the same.
        full = self.train_dataset  # type: ignore[attr-defined]
        mix = self.language_mix
        if len(set(full[LANG_COLUMN])) < 2 and 0 < mix.zh_ratio < 1:
            log.warning("the training pairs are all in one language: prefer_chinese_ratio cannot apply")
        self.pair_sampler = MixedBucketSampler(
            full[LANG_COLUMN],
            full[LENGTH_COLUMN],
            zh_ratio=mix.zh_ratio,
            length_edges=mix.length_edges,
            seed=mix.seed,
            when_exhausted=mix.when_exhausted,
        )
        return self.pair_sampler

    def _run_epoch(self, model: Any, epoch: int, *args: Any, **kwargs: Any) -> Any:
        # On a resume under several processes the loader is wrapped in skip and shard samplers,
        # which the Trainer's own set_epoch does not reach: set this epoch's shuffle here.
        if self.pair_sampler is not None:
            self.pair_sampler.set_epoch(epoch)
        return super()._run_epoch(model, epoch, *args, **kwargs)  # type: ignore[misc]


class K12ORPOTrainer(LanguageMixMixin, ORPOTrainer):
    def __init__(
        self,
        *args: Any,
        length_penalty: float = 0.0,
        padding_free: bool = False,
        activation_offload: bool = False,
        **kwargs: Any,
    ) -> None:
        self.length_penalty = length_penalty
        super().__init__(*args, **kwargs)
        model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        add_fused_lm_head(model)
        if padding_free:
            # ORPO truncates at tokenisation, so the collator only has to pack.
            self.data_collator = PackedPairs("orpo")
        # TRL's experimental ORPO has no activation_offloading argument: the same context as
        # TRL's SFT and DPO trainers enter in their training step.
        self.offload = offload_context(self.model, activation_offload)

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        with self.offload:
            return super().training_step(*args, **kwargs)

    def answer_logps(self, model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Per-row sums of answer-token log-probs and answer token counts, chosen rows first."""
        kwargs = {"output_router_logits": True} if self.aux_loss_enabled else {}
        if is_packed(batch):
            return packed_logps(model, batch, **kwargs)
        joined = self.concatenated_inputs(
            batch, padding_value=self.padding_value, device=self.accelerator.device
        )
        labels = joined["concatenated_labels"]
        outputs = model(
            joined["concatenated_input_ids"],
            attention_mask=joined["concatenated_attention_mask"],
            labels=labels,
            fused_lm_head=True,
            use_cache=False,
            **kwargs,
        )
        mask = labels[:, 1:] != -100
        per_token = outputs.log_probs[:, -mask.size(1) :]  # zero where the label is -100
        return per_token.sum(-1), mask.sum(-1), outputs

    def get_batch_loss_metrics(
        self, model: Any, batch: dict[str, Any], train_eval: Literal["train", "eval"] = "train"
    ) -> tuple[torch.Tensor, dict[str, float]]:
        sums, counts, outputs = self.answer_logps(model, batch)
        n = sums.shape[0] // 2
        mean_logps = sums / counts.clamp(min=1)
        terms = orpo_terms(
            mean_logps[:n],
            mean_logps[n:],
            counts[:n],
            counts[n:],
            beta=self.beta,
            length_penalty=self.length_penalty,
        )
        loss = terms.loss
        if self.aux_loss_enabled:
            loss = loss + self.aux_loss_coef * outputs.aux_loss
        chosen_rewards = self.beta * mean_logps[:n].detach()
        rejected_rewards = self.beta * mean_logps[n:].detach()
        gather = self.accelerator.gather_for_metrics
        values = {
            "rewards/chosen": chosen_rewards,
            "rewards/rejected": rejected_rewards,
            "rewards/accuracies": (chosen_rewards > rejected_rewards).float(),
            "rewards/margins": chosen_rewards - rejected_rewards,
            "logps/chosen": mean_logps[:n].detach(),
            "logps/rejected": mean_logps[n:].detach(),
            "nll_loss": terms.nll.detach(),
            "log_odds_ratio": -terms.odds_ratio_loss.detach(),
            "log_odds_chosen": terms.log_odds.detach(),
            "length_shift": terms.length_shift.detach(),
        }
        prefix = "eval_" if train_eval == "eval" else ""
        metrics = {f"{prefix}{k}": gather(v.reshape(-1)).float().mean().item() for k, v in values.items()}
        # Gathered, so that every process sees a non-finite loss on any of them and all stop.
        losses = self.accelerator.gather(loss.detach().reshape(1))
        if not math.isfinite(metrics[f"{prefix}nll_loss"]) or not torch.isfinite(losses).all().item():
            raise FloatingPointError(
                f"ORPO loss is not finite at step {self.state.global_step} ({train_eval}) on some "
                f"process; answer tokens per row here {counts.tolist()}; check data.max_length and "
                "data.min_answer_tokens"
            )
        return loss, metrics


def check_padding_free_dpo(args: Any) -> None:
    """The packed path computes the sigmoid loss on plain summed log-ratios only; anything else
    would silently train a different objective. No args: TRL's defaults, which fit."""
    if args is None:
        return
    unsupported = {
        "loss_type": (list(args.loss_type), ["sigmoid"]),
        "f_divergence_type": (str(args.f_divergence_type), "reverse_kl"),
        "ld_alpha": (args.ld_alpha, None),
        "use_weighting": (args.use_weighting, False),
    }
    wrong = [f"{k}={got!r} (needs {need!r})" for k, (got, need) in unsupported.items() if got != need]
    if wrong:
        raise ValueError(
            f"data.padding_free supports only the sigmoid DPO loss; unsupported: {', '.join(wrong)}"
        )


class K12DPOTrainer(LanguageMixMixin, DPOTrainer):
    def __init__(
        self, *args: Any, reference_free: bool = False, padding_free: bool = False, **kwargs: Any
    ) -> None:
        self.reference_free = reference_free
        if padding_free:
            check_padding_free_dpo(kwargs.get("args"))
        super().__init__(*args, **kwargs)
        if padding_free:
            if self.aux_loss_enabled:
                raise ValueError("data.padding_free does not support MoE router aux losses")
            self.data_collator = PackedPairs(
                "dpo", max_length=self.args.max_length, truncation_mode=self.args.truncation_mode
            )
        if reference_free:
            # TRL then reads the reference log-probs from the batch and runs no reference forward.
            self.precompute_ref_logps = True
            self.train_dataset = self._precompute_ref_logps(self.train_dataset, "train", 0)
            if self.eval_dataset is not None:
                self.eval_dataset = self._precompute_ref_logps(self.eval_dataset, "eval", 0)

    def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
        if not self.reference_free:
            return super()._precompute_ref_logps(dataset, name, batch_size)
        zeros = [0.0] * len(dataset)
        return dataset.add_column("ref_chosen_logps", zeros).add_column("ref_rejected_logps", zeros)

    def compute_ref_log_probs(self, model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Also serves a packed batch: `evaluate(dataset)` precomputes with the current collator."""
        if not is_packed(inputs):
            return super().compute_ref_log_probs(model, inputs)
        adapter = contextlib.nullcontext()
        if self.ref_model is None and is_peft_model(self.model):
            unwrapped = self.accelerator.unwrap_model(self.model)
            adapter = use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None)
        with (
            torch.no_grad(),
            disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs),
            adapter,
            self.accelerator.autocast(),
        ):
            logps = packed_logps(model, inputs)[0]
        return logps.chunk(2)

    def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
        """TRL's `_compute_loss` reads padded rows (`chunk(2)` on the batch dimension); a packed
        row needs per-sequence sums first, then the same sigmoid loss and metrics."""
        if not is_packed(inputs):
            return super()._compute_loss(model, inputs, return_outputs)
        mode = "train" if self.model.training else "eval"
        logps = packed_logps(model, inputs)[0]
        chosen_logps, rejected_logps = logps.chunk(2)
        if self.precompute_ref_logps:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            reference = self.ref_model if self.ref_model is not None else self.model
            ref_chosen, ref_rejected = self.compute_ref_log_probs(reference, inputs)
        chosen_logratios = chosen_logps - ref_chosen
        rejected_logratios = rejected_logps - ref_rejected
        per_pair = -F.logsigmoid(self.beta * (chosen_logratios - rejected_logratios))
        loss = per_pair.mean() * self.loss_weights[0]

        metrics = self._metrics[mode]
        if mode == "train":
            ids = inputs["input_ids"]
            tokens = self.accelerator.gather_for_metrics(ids.new_tensor(ids.numel())).sum().item()
            self._total_train_tokens += tokens // self._tp_size
        metrics["num_tokens"] = [self._total_train_tokens]
        gather = self.accelerator.gather
        chosen_rewards = self.beta * chosen_logratios.detach()
        rejected_rewards = self.beta * rejected_logratios.detach()
        metrics["rewards/chosen"].append(gather(chosen_rewards).mean().item())
        metrics["rewards/rejected"].append(gather(rejected_rewards).mean().item())
        metrics["rewards/accuracies"].append(
            gather((chosen_rewards > rejected_rewards).float()).mean().item()
        )
        metrics["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
        metrics["logps/chosen"].append(gather(chosen_logps.detach()).mean().item())
        metrics["logps/rejected"].append(gather(rejected_logps.detach()).mean().item())
        if not return_outputs:
            return loss
        # As TRL: the fused head builds no logits, so `compute_metrics` gets them from a plain forward.
        with torch.no_grad():
            outputs = model(**{k: inputs[k] for k in MODEL_KEYS}, use_cache=False)
        return loss, outputs
