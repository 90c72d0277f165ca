"""The scorer's training losses, checked against hand computations."""

import math

import pytest
import torch

from artquant_core.training.losses import (expected_score, fidelity_loss, level_kl_loss, pair_fidelity_loss,
                                           thurstone_prob, token_cross_entropy)


def test_level_kl_uses_full_vocab_softmax_and_only_level_targets():
    torch.manual_seed(0)
    logits = torch.randn(3, 11)
    ids = torch.tensor([7, 2, 9, 4, 0])
    target = torch.softmax(torch.randn(3, 5), -1)
    target[1, 3] = 0.0
    target[1] /= target[1].sum()
    log_p = torch.log_softmax(logits, -1)
    expected = sum(sum(float(q) * (math.log(float(q)) - float(log_p[r, ids[k]]))
                       for k, q in enumerate(target[r]) if q > 0) for r in range(3)) / 3
    assert level_kl_loss(logits, target, ids) == pytest.approx(expected, rel=1e-5)
    # mass on a non-level token raises the loss (the vocabulary-wide softmax is the point)
    bumped = logits.clone()
    bumped[:, 5] += 5.0
    assert level_kl_loss(bumped, target, ids) > level_kl_loss(logits, target, ids)
    # over the level tokens only, that extra mass is invisible
    assert level_kl_loss(bumped, target, ids, over="levels") == pytest.approx(
        float(level_kl_loss(logits, target, ids, over="levels")), rel=1e-5)


def test_level_kl_is_zero_at_the_target_and_accepts_per_row_ids():
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    target = torch.tensor([[0.2, 0.5, 0.3], [1.0, 0.0, 0.0]])
    logits = torch.full((2, 8), -1e4)
    for r in range(2):
        for k in range(3):
            if target[r, k] > 0:
                logits[r, ids[r, k]] = math.log(target[r, k])
    assert float(level_kl_loss(logits, target, ids)) == pytest.approx(0.0, abs=1e-5)


def test_thurstone_and_fidelity_match_hand_values():
    p = thurstone_prob(torch.tensor([7.0]), torch.tensor([5.0]), torch.tensor([1.0]), torch.tensor([1.0]))
    phi = 0.5 * (1 + math.erf((2 / math.sqrt(2)) / math.sqrt(2)))
    assert float(p) == pytest.approx(phi, rel=1e-6)
    pv, gv = 0.8, 0.6
    expected = 1 - math.sqrt(pv * gv) - math.sqrt((1 - pv) * (1 - gv))
    assert float(fidelity_loss(torch.tensor([pv]), torch.tensor([gv]))) == pytest.approx(expected, abs=1e-6)
    assert float(fidelity_loss(torch.tensor([0.3]), torch.tensor([0.3]))) == pytest.approx(0.0, abs=1e-6)


def test_pair_fidelity_over_all_pairs_and_gradient_direction():
    mu = torch.tensor([5.0, 6.0, 4.0], requires_grad=True)
    sigma = torch.ones(3)
    gt = torch.tensor([8.0, 2.0, 5.0])
    loss = pair_fidelity_loss(mu, sigma, gt, fixed_sigma=True)
    pairs = [(0, 1), (0, 2), (1, 2)]
    hand = 0.0
    for i, j in pairs:
        pv = 0.5 * (1 + math.erf((float(mu[i] - mu[j]) / math.sqrt(2)) / math.sqrt(2)))
        gv = 0.5 * (1 + math.erf((float(gt[i] - gt[j]) / math.sqrt(2)) / math.sqrt(2)))
        hand += 1 - math.sqrt(pv * gv) - math.sqrt((1 - pv) * (1 - gv))
    assert float(loss) == pytest.approx(hand / 3, rel=1e-5)
    loss.backward()
    assert mu.grad[0] < 0 and mu.grad[1] > 0  # push the best image up, the worst down
    assert float(pair_fidelity_loss(mu[:1], sigma[:1], gt[:1])) == 0.0


def test_expected_score_and_spread():
    anchors = torch.tensor([10.0, 7.5, 5.0, 3.5, 1.0])
    mu, sd = expected_score(torch.tensor([[0.0, 0.5, 0.5, 0.0, 0.0]]), anchors)
    assert float(mu) == pytest.approx(6.25)
    assert float(sd) == pytest.approx(1.25)


def test_token_cross_entropy_is_shifted_and_masks_rows():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 6)
    labels = torch.tensor([[-100, 3, 1, -100], [-100, -100, 5, 2]])
    manual = []
    for b in range(2):
        for t in range(1, 4):
            if labels[b, t] != -100:
                manual.append(-torch.log_softmax(logits[b, t - 1], -1)[labels[b, t]])
    assert float(token_cross_entropy(logits, labels)) == pytest.approx(float(torch.stack(manual).mean()), rel=1e-6)
    only_second = token_cross_entropy(logits, labels, rows=torch.tensor([False, True]))
    assert float(only_second) == pytest.approx(float(torch.stack(manual[2:]).mean()), rel=1e-6)
    assert float(token_cross_entropy(logits, labels, rows=torch.tensor([False, False]))) == 0.0
