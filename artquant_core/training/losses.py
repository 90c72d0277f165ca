"""The scorer's training losses as pure tensor functions (no model, no tokenizer).

Conventions: ``logits`` are next-token logits ``(B, T, V)`` as a causal LM
returns them (position ``t`` predicts token ``t + 1``); ``labels`` are token
ids with ``-100`` where no loss is taken.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from artquant_core.levels import expected_score_and_spread

IGNORE_INDEX = -100


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                        rows: torch.Tensor | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled tokens of the selected rows.

    ``rows`` is a boolean mask ``(B,)`` choosing the examples of one task; a
    selection without labelled tokens gives a zero that still carries the graph
    (so every parameter gets a gradient under DDP).
    """
    if rows is not None:
        labels = labels.masked_fill(~rows[:, None], IGNORE_INDEX)
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    n = (shift_labels != IGNORE_INDEX).sum()
    if n == 0:
        return shift_logits.sum() * 0.0
    loss = F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")
    return loss / n


def level_log_probs(level_logits: torch.Tensor, level_token_ids: torch.Tensor,
                    over: str = "vocab") -> torch.Tensor:
    """Log-probabilities ``(N, L)`` of the level tokens at the level position.

    ``level_token_ids`` is ``(L,)`` or one row of ids per example ``(N, L)``.

    ``over="vocab"`` is the method's choice (softmax over the whole vocabulary,
    so mass on non-level tokens is penalised); ``"levels"`` renormalises over
    the ``L`` level tokens only.
    """
    level_logits = level_logits.float()
    ids = level_token_ids.to(level_logits.device)
    if ids.dim() == 1:
        ids = ids.expand(level_logits.shape[0], -1)
    if over == "vocab":
        return torch.log_softmax(level_logits, dim=-1).gather(1, ids)
    if over == "levels":
        return torch.log_softmax(level_logits.gather(1, ids), dim=-1)
    raise ValueError(f"level softmax must be 'vocab' or 'levels', got {over!r}")


def level_kl_loss(level_logits: torch.Tensor, target_probs: torch.Tensor, level_token_ids: torch.Tensor,
                  over: str = "vocab") -> torch.Tensor:
    """Mean over rows of KL(target ‖ softmax(level_logits)).

    ``level_logits (N, V)`` are the logits that predict the level token;
    ``target_probs (N, L)`` the soft labels. The target is zero on every
    non-level token, so only the level entries enter the sum (0·log 0 = 0).
    """
    if level_logits.shape[0] == 0:
        return level_logits.sum() * 0.0
    target = target_probs.to(torch.float32)
    log_p = level_log_probs(level_logits, level_token_ids, over)
    log_q = torch.where(target > 0, target.clamp_min(1e-30).log(), torch.zeros_like(target))
    return (target * (log_q - log_p)).sum(-1).mean()


def expected_score(level_probs: torch.Tensor, anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Score (expectation) and spread (standard deviation) of level distributions ``(N, L)``
    (:func:`artquant_core.levels.expected_score_and_spread`)."""
    return expected_score_and_spread(level_probs, anchors)


def thurstone_prob(mu_a: torch.Tensor, mu_b: torch.Tensor, sigma_a: torch.Tensor | float = 1.0,
                   sigma_b: torch.Tensor | float = 1.0) -> torch.Tensor:
    """P(A better than B) = Phi((muA - muB) / sqrt(sA² + sB²))."""
    sa = torch.as_tensor(sigma_a, dtype=mu_a.dtype, device=mu_a.device)
    sb = torch.as_tensor(sigma_b, dtype=mu_a.dtype, device=mu_a.device)
    z = (mu_a - mu_b) / (sa ** 2 + sb ** 2).clamp_min(1e-12).sqrt()
    return 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))


def fidelity_loss(p: torch.Tensor, g: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Mean of 1 - sqrt(p g) - sqrt((1-p)(1-g)) (zero when p == g ∈ {0, 1})."""
    pg = (p * g).clamp_min(eps).sqrt()
    qh = ((1 - p) * (1 - g)).clamp_min(eps).sqrt()
    if p.numel() == 0:
        return p.sum() * 0.0
    return (1.0 - pg - qh).mean()


#: How the predicted side of the pair loss gets its spreads (``pair_fidelity_loss(sigma_mode=...)``).
PAIR_SIGMA_MODES = ("fixed", "detached", "predicted")

#: The spread each image gets where a spread is fixed or unknown (score units; DeQA-Score's 1).
FIXED_PAIR_SIGMA = 1.0


def pair_fidelity_loss(pred_mu: torch.Tensor, pred_sigma: torch.Tensor, gt: torch.Tensor,
                       gt_std: torch.Tensor | None = None, sigma_mode: str = "fixed") -> torch.Tensor:
    """Thurstone fidelity loss over every pair (i < j) of a batch's score examples.

    Target: ``g = Phi((gt_i - gt_j) / sqrt(std_i^2 + std_j^2))`` with the records' rater spreads
    ``gt_std`` (``FIXED_PAIR_SIGMA`` where unknown or NaN), a constant. Prediction, by ``sigma_mode``:

    - ``"fixed"`` (default, the reference's): ``p = Phi((mu_i - mu_j) / sqrt(2))``, a spread of
      ``FIXED_PAIR_SIGMA`` per image; ``pred_sigma`` is not used, so the loss only moves the means.
      DeQA-Score's released recipes set both ``use_fix_std`` and ``detach_pred_std``; in its
      rating loss ``use_fix_std`` takes precedence, so the fixed spread is what actually trains
      (its target keeps the records' stds, as here).
    - ``"detached"``: the predicted spreads, detached (DeQA-Score's ``detach_pred_std`` alone):
      they scale the gap, but no gradient reaches them.
    - ``"predicted"``: the predicted spreads with their gradient. The model can then lower the
      loss by inflating its spread (every ``p`` moves towards 1/2), so use it knowingly.
    """
    if sigma_mode not in PAIR_SIGMA_MODES:
        raise ValueError(f"pair sigma mode must be one of {PAIR_SIGMA_MODES}, got {sigma_mode!r} "
                         f"(config field pair_sigma)")
    n = pred_mu.shape[0]
    if n < 2:
        return pred_mu.sum() * 0.0
    i, j = torch.triu_indices(n, n, offset=1, device=pred_mu.device)
    gt = gt.to(pred_mu)
    if sigma_mode == "fixed":
        p = thurstone_prob(pred_mu[i], pred_mu[j], FIXED_PAIR_SIGMA, FIXED_PAIR_SIGMA)
    else:
        sigma = pred_sigma.detach() if sigma_mode == "detached" else pred_sigma
        p = thurstone_prob(pred_mu[i], pred_mu[j], sigma[i], sigma[j])
    std = torch.full_like(gt, FIXED_PAIR_SIGMA) if gt_std is None else gt_std.to(pred_mu)
    std = torch.where(torch.isnan(std), torch.full_like(std, FIXED_PAIR_SIGMA), std)
    g = thurstone_prob(gt[i], gt[j], std[i], std[j])
    return fidelity_loss(p, g.detach())
