"""Shared bits of the DDPO tests: a protocol-only reward and a tiny, fast config."""

from __future__ import annotations


from alignment import DDPOConfig


class Brightness:
    """Mean pixel value; a local stand-in following the reward protocol."""

    name = "brightness"
    differentiable = True

    def __call__(self, images, prompts=None):
        return images.float().mean(dim=(1, 2, 3))


class Composite:
    """A composite-like reward exposing components()."""

    name = "mix"
    differentiable = True

    def components(self, images, prompts=None):
        b = images.float().mean(dim=(1, 2, 3))
        r = images[:, 0].float().mean(dim=(1, 2))
        return {"bright": b, "red": r, "total": 0.5 * b + 0.5 * r}

    def __call__(self, images, prompts=None):
        return self.components(images, prompts)["total"]


def tiny_config(out, **kw) -> DDPOConfig:
    base = dict(output_dir=str(out), num_epochs=2, sample_num_steps=3, sample_batch_size=2,
                sample_num_batches_per_epoch=2, train_batch_size=2, eval_every=1, eval_num_per_prompt=1,
                eval_prompts=["a painting of a horse", "a boat on the sea"], checkpoint_every=1,
                per_prompt_min_count=2)
    base.update(kw)
    return DDPOConfig(**base)
