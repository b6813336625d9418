"""The length-penalised ORPO loss on hand-built numbers."""

from __future__ import annotations

import math

import torch

from k12tune.train.pref_losses import log1mexp, orpo_terms


def log_odds(mean_logp: float) -> float:
    p = math.exp(mean_logp)
    return math.log(p / (1 - p))


def test_orpo_terms_match_hand_computation() -> None:
    # Two pairs: the first chosen answer is 30 tokens longer, the second 20 tokens shorter.
    chosen, rejected = [-0.5, -1.2], [-1.5, -0.9]
    n_chosen, n_rejected = [50, 10], [20, 30]
    beta, lam = 0.2, 0.02
    terms = orpo_terms(
        torch.tensor(chosen),
        torch.tensor(rejected),
        torch.tensor(n_chosen),
        torch.tensor(n_rejected),
        beta=beta,
        length_penalty=lam,
    )
    margins = [log_odds(c) - log_odds(r) for c, r in zip(chosen, rejected, strict=True)]
    shifts = [lam * (nc - nr) for nc, nr in zip(n_chosen, n_rejected, strict=True)]
    assert shifts == [0.6, -0.4]  # value and sign: + when the chosen answer is longer
    assert torch.allclose(terms.length_shift, torch.tensor(shifts), atol=1e-7)
    assert torch.allclose(terms.log_odds, torch.tensor(margins), atol=1e-6)
    or_losses = [math.log1p(math.exp(-(m + s))) for m, s in zip(margins, shifts, strict=True)]
    assert torch.allclose(terms.odds_ratio_loss, torch.tensor(or_losses), atol=1e-6)
    nll = -(chosen[0] * 50 + chosen[1] * 10) / 60  # token-weighted over the chosen answers
    assert math.isclose(terms.nll.item(), nll, rel_tol=1e-6)
    assert math.isclose(terms.loss.item(), nll + beta * sum(or_losses) / 2, rel_tol=1e-6)


def test_penalty_off_is_plain_orpo_and_on_moves_the_loss_the_documented_way() -> None:
    args = (torch.tensor([-1.0]), torch.tensor([-1.0]))  # equal log-odds: margin 0
    longer = orpo_terms(*args, torch.tensor([80]), torch.tensor([30]), beta=1.0, length_penalty=0.02)
    shorter = orpo_terms(*args, torch.tensor([30]), torch.tensor([80]), beta=1.0, length_penalty=0.02)
    plain = orpo_terms(*args, torch.tensor([80]), torch.tensor([30]), beta=1.0, length_penalty=0.0)
    assert math.isclose(plain.odds_ratio_loss.item(), math.log(2), rel_tol=1e-6)
    # A pair the chosen answer wins by being longer costs less and pulls less (sigmoid(-1) vs (1)).
    assert math.isclose(longer.odds_ratio_loss.item(), math.log1p(math.exp(-1.0)), rel_tol=1e-6)
    assert math.isclose(shorter.odds_ratio_loss.item(), math.log1p(math.exp(1.0)), rel_tol=1e-6)
    grads = []
    for n_c, n_r in ((80, 30), (30, 80)):
        margin = torch.zeros(1, requires_grad=True)
        torch.nn.functional.logsigmoid(margin + 0.02 * (n_c - n_r)).neg().backward()
        grads.append(abs(margin.grad.item()))
    assert grads[0] < 0.5 < grads[1]


def test_log1mexp_is_accurate_at_both_ends() -> None:
    x = torch.tensor([-1e-5, -0.1, -0.7, -5.0, -40.0], dtype=torch.float64)
    expected = torch.log(-torch.expm1(x))
    assert torch.allclose(log1mexp(x), expected, rtol=1e-7)
    # Above the cap (-1e-6) the value is the cap's: the odds stay finite.
    capped = log1mexp(torch.tensor([-1e-9, 0.0], dtype=torch.float64))
    assert torch.allclose(capped, torch.full((2,), math.log(-math.expm1(-1e-6)), dtype=torch.float64))


def test_certain_answers_keep_loss_and_gradient_finite() -> None:
    # A mean log-prob of exactly 0 (reached in fp32 once every token is certain) or just below.
    chosen = torch.tensor([0.0, -1e-9, -0.5], requires_grad=True)
    rejected = torch.tensor([-2.0, 0.0, -1e-12], requires_grad=True)
    terms = orpo_terms(
        chosen, rejected, torch.tensor([5, 5, 5]), torch.tensor([3, 3, 3]), beta=0.2, length_penalty=0.02
    )
    terms.loss.backward()
    assert torch.isfinite(terms.loss)
    assert torch.isfinite(chosen.grad).all() and torch.isfinite(rejected.grad).all()
