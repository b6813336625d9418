"""The ORPO loss with a length penalty, as plain tensor arithmetic (tested on hand-built batches).

Notation, per pair i: P_c, P_r are the chosen and rejected answers' mean per-token
probabilities, exp(mean log p) over the answer tokens (never the prompt); n_c, n_r their token
counts (the answer's tokens after truncation, with the closing `<|im_end|>`).

- log-odds margin (ORPO, Hong et al. 2024, eq. 4-7):
      m_i = log(P_c / (1 - P_c)) - log(P_r / (1 - P_r))
- length shift (length-regularised DPO, Park et al. 2024, "Disentangling Length from Quality
  in DPO", eq. 9, on ORPO's margin):
      s_i = length_penalty * (n_c - n_r)              (in tokens, no further normalisation)
- odds-ratio loss:        L_OR,i = -log sigmoid(m_i + s_i)
- NLL of the chosen answer, averaged over all chosen answer tokens of the batch:
      L_NLL = - sum_i n_c,i * mean log p_c,i / sum_i n_c,i
- loss = L_NLL + beta * mean_i L_OR,i

Why the shift is added: R-DPO derives it from a reward that pays `-length_penalty` per token.
The preference a longer chosen answer gets for its length is then credited to the length term
rather than learned by the model: a pair the chosen answer wins by being 100 tokens longer
already sits 100 * length_penalty up the sigmoid, so it yields a smaller gradient, while a pair
won by the *shorter* answer yields a larger one. The net pull is away from "longer wins". (The
opposite sign, subtracting s_i, would enlarge the gradient of exactly the pairs a longer answer
wins, and so teach length.) With length_penalty 0.02, a 50-token difference moves the margin
by 1.0, about the log-odds a trained ORPO model reaches on typical pairs.

NLL over the answer only, as the ORPO paper defines it: TRL's ORPOTrainer takes it over prompt
and answer (huggingface/trl#2527), which trains the model to write user turns too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

LOG_HALF = -0.6931471805599453
# A mean log-prob of exactly 0 (every answer token certain, reached in fp32) has infinite odds:
# inputs are capped just below 0 so the margin stays finite.
MAX_MEAN_LOGP = -1e-6


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, accurate near both ends (Maechler 2012). Each branch only sees
    inputs where it is finite: `torch.where` backpropagates through both, and a NaN in the
    unused branch would still poison the gradient."""
    x = x.clamp(max=MAX_MEAN_LOGP)
    near_zero = x > LOG_HALF
    small = torch.log(-torch.expm1(torch.where(near_zero, x, LOG_HALF)))
    large = torch.log1p(-torch.exp(torch.where(near_zero, LOG_HALF, x)))
    return torch.where(near_zero, small, large)


@dataclass(frozen=True)
class ORPOTerms:
    loss: torch.Tensor  # scalar
    nll: torch.Tensor  # scalar
    log_odds: torch.Tensor  # (batch,) m_i
    length_shift: torch.Tensor  # (batch,) s_i
    odds_ratio_loss: torch.Tensor  # (batch,) L_OR,i


def orpo_terms(
    chosen_mean_logps: torch.Tensor,
    rejected_mean_logps: torch.Tensor,
    chosen_tokens: torch.Tensor,
    rejected_tokens: torch.Tensor,
    *,
    beta: float,
    length_penalty: float,
) -> ORPOTerms:
    """The loss and its parts from per-pair mean answer log-probs and answer token counts."""
    chosen = chosen_mean_logps.float()
    rejected = rejected_mean_logps.float()
    log_odds = (chosen - rejected) - (log1mexp(chosen) - log1mexp(rejected))
    shift = length_penalty * (chosen_tokens - rejected_tokens).to(log_odds.dtype)
    odds_ratio_loss = -F.logsigmoid(log_odds + shift)
    n_chosen = chosen_tokens.to(chosen.dtype)
    nll = -(chosen * n_chosen).sum() / n_chosen.sum().clamp(min=1)
    return ORPOTerms(nll + beta * odds_ratio_loss.mean(), nll, log_odds, shift, odds_ratio_loss)
