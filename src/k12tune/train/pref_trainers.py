"""TRL's preference trainers with what k12tune adds on top, each a small override:

- `LanguageMixMixin`: the training order comes from the data stage's `MixedBucketSampler`, so
  each epoch fed to the trainer holds `prefer_chinese_ratio` Chinese pairs with the length
  buckets spread evenly; the HF Trainer calls its `set_epoch` every epoch (a new shuffle).
- `K12ORPOTrainer`: the length-penalised ORPO loss of `pref_losses.py`, with the NLL on the
  answer only; log-probs through TRL's fused LM head (as its DPO does), so the
  (rows x tokens x 152k) logits are never built, about 5.6 GiB at two rows of 2048 tokens,
  which is what lets 16-bit ORPO fit 24 GB; and a clear error instead of TRL's silent NaN.
- `K12DPOTrainer`: `reference_free`: reference log-probabilities of zero, fed through TRL's own
  precomputed-reference path, so no reference forward runs and the rest of TRL's loss and
  metrics stay untouched.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Literal

import torch

# The ORPO API we rely on is pinned (trl>=1.16,<1.17 in pyproject.toml); no warning per run.
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
from trl import DPOTrainer
from trl.experimental.orpo import ORPOConfig as ORPOArgs
from trl.experimental.orpo import ORPOTrainer
from trl.trainer.utils import add_fused_lm_head

from k12tune.data.mix import MixedBucketSampler
from k12tune.train.pref_losses import orpo_terms

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
    def __init__(self, *args: Any, length_penalty: float = 0.0, **kwargs: Any) -> None:
        self.length_penalty = length_penalty
        super().__init__(*args, **kwargs)
        model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        add_fused_lm_head(model)

    def answer_logps(self, model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Per-row sums of answer-token log-probs and answer token counts, chosen rows first."""
        joined = self.concatenated_inputs(
            batch, padding_value=self.padding_value, device=self.accelerator.device
        )
        kwargs = {"output_router_logits": True} if self.aux_loss_enabled else {}
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
        n = batch["chosen_labels"].shape[0]
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


class K12DPOTrainer(LanguageMixMixin, DPOTrainer):
    def __init__(self, *args: Any, reference_free: bool = False, **kwargs: Any) -> None:
        self.reference_free = reference_free
        super().__init__(*args, **kwargs)
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
