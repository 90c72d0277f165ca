"""Qwen-VL's Conv3d patch embedding computed as one matmul.

The Conv3d's kernel equals its stride, so it is a linear map of each flattened
patch. On CPU the convolution dominates the tiny model's backward pass (72 %);
the matmul gives the same numbers and gradients several times faster. The swap
keeps the parameter object and its state-dict key (``...patch_embed.proj.weight``),
so checkpoints stay loadable by plain transformers.
"""

from __future__ import annotations

import torch
from torch import nn


class LinearPatchProjection(nn.Module):
    """Drop-in for a patch-sized, patch-strided ``nn.Conv3d``/``nn.Conv2d`` (same ``weight``/``bias``)."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.weight = conv.weight
        self.bias = conv.bias
        self.out_channels = conv.out_channels

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        flat = patches.reshape(patches.shape[0], -1)
        out = flat @ self.weight.reshape(self.out_channels, -1).t()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(patches.shape[0], self.out_channels, *([1] * (patches.dim() - 2)))


def use_linear_patch_embed(model: nn.Module) -> int:
    """Swap every Qwen-VL vision ``patch_embed.proj`` conv for :class:`LinearPatchProjection`; returns the count."""
    swapped = 0
    for name, module in list(model.named_modules()):
        if not name.endswith("patch_embed"):
            continue
        proj = getattr(module, "proj", None)
        if isinstance(proj, nn.Conv3d) and tuple(proj.kernel_size) == tuple(proj.stride) and proj.padding == (0, 0, 0):
            module.proj = LinearPatchProjection(proj)
            swapped += 1
    return swapped
