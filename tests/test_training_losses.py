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
    loss = pair_fidelity_loss(mu, sigma, gt, sigma_mode="fixed")
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


def test_pair_loss_default_is_the_references_fixed_sigma_and_ignores_the_spread():
    # DeQA-Score's recipe: use_fix_std (a spread of 1 per image on the predicted side), target from the records' std
    mu, gt, gt_std = torch.tensor([6.0, 5.0, 4.5]), torch.tensor([5.5, 5.4, 3.0]), torch.tensor([1.5, 0.5, 1.0])
    narrow = pair_fidelity_loss(mu, torch.full((3,), 0.3), gt, gt_std)
    assert float(narrow) == pytest.approx(float(pair_fidelity_loss(mu, torch.ones(3), gt, gt_std, "predicted")))
    # a NaN (unknown) record std counts as 1
    assert float(pair_fidelity_loss(mu, torch.ones(3), gt, torch.tensor([float("nan"), 1.0, 1.0]))) == pytest.approx(
        float(pair_fidelity_loss(mu, torch.ones(3), gt, torch.ones(3))))


@pytest.mark.parametrize("mode", ["fixed", "detached"])
def test_pair_loss_cannot_be_lowered_by_inflating_the_predicted_spread(mode):
    # nearly tied ground truth (g ~ 0.5), confidently ordered prediction: a wider spread would pull p to 0.5
    mu = torch.tensor([6.0, 5.0], requires_grad=True)
    sigma = torch.tensor([0.3, 0.3], requires_grad=True)
    gt, gt_std = torch.tensor([5.5, 5.4]), torch.tensor([1.0, 1.0])
    loss = pair_fidelity_loss(mu, sigma, gt, gt_std, sigma_mode=mode)
    loss.backward()
    assert sigma.grad is None or float(sigma.grad.abs().max()) == 0.0  # no gradient through the spread
    assert float(mu.grad.abs().max()) > 0  # the means still learn
    if mode == "fixed":  # the value ignores the spread too
        assert float(pair_fidelity_loss(mu, sigma * 10, gt, gt_std, mode)) == pytest.approx(float(loss))
    # the opt-in "predicted" mode is hackable: inflating the spread lowers the loss
    hackable_sigma = sigma.detach().clone().requires_grad_(True)
    hackable = pair_fidelity_loss(mu.detach(), hackable_sigma, gt, gt_std, sigma_mode="predicted")
    hackable.backward()
    assert float(hackable_sigma.grad.sum()) < 0
    assert float(pair_fidelity_loss(mu, sigma * 10, gt, gt_std, "predicted")) < float(hackable)


def test_pair_loss_through_the_level_distribution_moves_only_the_mean():
    # from level logits, the default loss's gradient is (d loss / d mu) * (d mu / d logits): nothing
    # flows through the spread, so it has no incentive to flatten the distribution
    anchors = torch.tensor([10.0, 7.5, 5.0, 3.5, 1.0])
    start = torch.tensor([[0.0, 3.0, 1.0, -1.0, -2.0], [-1.0, 0.5, 2.5, 0.5, -1.0]])
    gt = torch.tensor([5.2, 5.1])

    def gradients(mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        logits = start.clone().requires_grad_(True)
        mu, sigma = expected_score(torch.softmax(logits, -1), anchors)
        loss = pair_fidelity_loss(mu, sigma, gt, torch.ones(2), sigma_mode=mode)
        grad_logits, grad_mu = torch.autograd.grad(loss, [logits, mu])
        probs = torch.softmax(start, -1)
        d_mu = probs * (anchors - (probs * anchors).sum(-1, keepdim=True))  # d mu / d logits
        return grad_logits, grad_mu[:, None] * d_mu

    for mode in ("fixed", "detached"):
        through_logits, through_mean_only = gradients(mode)
        assert torch.allclose(through_logits, through_mean_only, atol=1e-7), mode
    through_logits, through_mean_only = gradients("predicted")
    assert not torch.allclose(through_logits, through_mean_only, atol=1e-7)


def test_pair_sigma_config_field_defaults_to_fixed_and_names_bad_values():
    from artquant_core.training import ScorerTrainingConfig

    assert ScorerTrainingConfig(output_dir="/tmp/unused").pair_sigma == "fixed"
    with pytest.raises(ValueError, match="pair_sigma.*fixed, detached, predicted.*'learned'"):
        ScorerTrainingConfig(output_dir="/tmp/unused", pair_sigma="learned")


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
