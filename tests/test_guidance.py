"""Classifier-free guidance: the UNet and the flow transformer share one helper, equal to the textbook formula."""

from __future__ import annotations

import pytest
import torch

from alignment.flow_sampling import guided_velocity
from alignment.sampling import guided_noise_pred


class _FakeUNet(torch.nn.Module):
    """Per-sample and nonlinear in every input, so a mixed-up row, timestep or embedding shows."""

    def forward(self, x, t, encoder_hidden_states, return_dict=False):
        e = encoder_hidden_states.mean(dim=(1, 2)).view(-1, 1, 1, 1)
        return (torch.tanh(x * (1 + e)) + t.view(-1, 1, 1, 1) / 1000 * e.square(),)


class _FakeTransformer(torch.nn.Module):
    def forward(self, hidden_states, timestep, encoder_hidden_states, pooled_projections, return_dict=False):
        e = encoder_hidden_states.mean(dim=(1, 2)).view(-1, 1, 1, 1)
        p = pooled_projections.sum(dim=1).view(-1, 1, 1, 1)
        return (torch.sin(hidden_states * (1 + e)) * p + timestep.view(-1, 1, 1, 1) / 1000,)


def _direct(call, guidance_scale):
    """uncond + g * (cond - uncond) from two separate, plain calls."""
    uncond, cond = call(negative=True), call(negative=False)
    return uncond + guidance_scale * (cond - uncond)


@pytest.mark.parametrize("per_sample_t", [False, True])
@pytest.mark.parametrize("negative_batch", [1, 3])
def test_both_model_families_guide_as_two_separate_calls_would(per_sample_t, negative_batch):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 5, 5, generator=g)
    t = torch.tensor([900.0, 500.0, 100.0]) if per_sample_t else torch.tensor(700.0)
    tb = t if per_sample_t else t.expand(3)
    embeds, neg = torch.randn(3, 6, 8, generator=g), torch.randn(negative_batch, 6, 8, generator=g)
    pooled, neg_pooled = torch.randn(3, 2, generator=g), torch.randn(negative_batch, 2, generator=g)
    unet, transformer = _FakeUNet(), _FakeTransformer()

    def unet_call(negative):
        return unet(x, tb, neg.expand(3, -1, -1) if negative else embeds)[0]

    def transformer_call(negative):
        e, p = (neg.expand(3, -1, -1), neg_pooled.expand(3, -1)) if negative else (embeds, pooled)
        return transformer(hidden_states=x, timestep=tb, encoder_hidden_states=e, pooled_projections=p)[0]

    for scale in (5.0, 2.5):
        torch.testing.assert_close(guided_noise_pred(unet, x, t, embeds, neg, scale), _direct(unet_call, scale))
        torch.testing.assert_close(guided_velocity(transformer, x, t, (embeds, pooled), (neg, neg_pooled), scale),
                                   _direct(transformer_call, scale))
    # no guidance (scale <= 1 or no negative): the conditional prediction alone
    torch.testing.assert_close(guided_noise_pred(unet, x, t, embeds, None, 5.0), unet_call(False))
    torch.testing.assert_close(guided_noise_pred(unet, x, t, embeds, neg, 1.0), unet_call(False))
    torch.testing.assert_close(guided_velocity(transformer, x, t, (embeds, pooled), None, 5.0),
                               transformer_call(False))
