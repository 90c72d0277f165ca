"""Throughput of ArtQuantReward's batched no-grad path against the naive per-image path.

Naive path (what a script without the reward would do): for each image, tensor →
uint8 PIL → the scorer's own Hugging Face image processor (``scorer.image_processor``,
the PIL processor saved with the scorer and loadable with ``AutoImageProcessor``) →
chat prompt tokenised with ``scorer.tokenizer`` → one model forward → level read-out.
Both paths use the same tiny scorer and the same images; each is timed once after
one warm-up call. The gradient path (forward + backward to the pixels) is reported
relative to the no-grad path.

The bare rows time the scorer's model alone on inputs preprocessed beforehand
(pixel values and token ids built once, outside the clock): forward and level
read-out, and for the gradient row forward + backward to the pixel values. The
``overhead`` figures are what the reward path (validation, torch-native
preprocessing, prompt encoding, the map to [0, 1]) adds on top: the issue's goal
is at most 20 %. Every time is the median of ``--repeats`` calls.

    OMP_NUM_THREADS=1 python scripts/bench_reward.py --batch 16 --size 64
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from anywhere

def naive_score(scorer, image: torch.Tensor) -> torch.Tensor:
    """One image the slow way: PIL + HF image processor + tokenizer + forward."""
    from artquant_core.images import to_pil_images

    pil = to_pil_images(image[None])[0]
    processed = scorer.image_processor(images=[pil], return_tensors="pt")
    if "image_grid_thw" in processed:
        merge = getattr(scorer.image_processor, "merge_size", 2)
        num_tokens = int(processed["image_grid_thw"][0].prod()) // merge**2
    else:
        num_tokens = scorer.family.tokens_per_image
    family = scorer.family
    text = family.prompt(scorer.score_question, family.image_text(num_tokens))
    ids = scorer.tokenizer(text, add_special_tokens=True)["input_ids"]
    ids += scorer.tokenizer(family.answer_separator + scorer.answer_prefix, add_special_tokens=False)["input_ids"]
    input_ids = torch.tensor([ids])
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
             **family.extra_inputs(input_ids), **{k: v for k, v in processed.items()}}
    logits = scorer.model(**batch).logits[:, -1, :]
    return scorer.score_from_logits(logits).score


def _timed(fn, repeats: int = 1) -> float:
    """Median wall time of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--family", default="qwen2_5_vl", choices=["qwen2_5_vl", "llava"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="calls per timing (median)")
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from artquant_core.images import round_to_uint8_grid
    from artquant_core.tiny import build_tiny_scorer
    from reward.artquant_reward import ArtQuantReward

    scorer = build_tiny_scorer(seed=0, pretrained=False, family=args.family)
    reward = ArtQuantReward(scorer, normalize=False, max_batch=args.batch)
    images = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    images = round_to_uint8_grid(images)  # both paths see the same pixels

    results = {}

    def naive():
        with torch.inference_mode():
            results["naive"] = torch.cat([naive_score(scorer, img) for img in images])

    def batched():
        results["batched"] = reward(images)

    with torch.inference_mode():
        naive_score(scorer, images[0])  # warm-up
    reward(images[:2])
    t_naive = _timed(naive, args.repeats)
    t_batched = _timed(batched, args.repeats)
    naive_values, batched_values = results["naive"], results["batched"]

    def grad_step():
        leaf = images.clone().requires_grad_(True)
        reward(leaf).sum().backward()

    grad_step()
    t_grad = _timed(grad_step, args.repeats)

    # the model alone, on inputs preprocessed once outside the clock
    question, prefix = scorer.prompt_for(None)
    encoded = scorer.encode(images, [question] * len(images), answer_prefix=prefix)
    pixel_key = "pixel_values"

    def bare_forward():
        with torch.no_grad():
            logits = scorer.model(**encoded, logits_to_keep=1).logits[:, -1, :]
            results["bare"] = scorer.score_from_logits(logits).score

    def bare_grad_step():
        leaf = encoded[pixel_key].detach().clone().requires_grad_(True)
        logits = scorer.model(**{**encoded, pixel_key: leaf}, logits_to_keep=1).logits[:, -1, :]
        scorer.score_from_logits(logits).score.sum().backward()

    bare_forward()
    bare_grad_step()
    t_bare = _timed(bare_forward, args.repeats)
    t_bare_grad = _timed(bare_grad_step, args.repeats)
    figures = {
        "batch": args.batch, "size": args.size, "family": args.family, "threads": args.threads,
        "naive_images_per_s": args.batch / t_naive,
        "batched_no_grad_images_per_s": args.batch / t_batched,
        "speedup": t_naive / t_batched,
        "grad_images_per_s": args.batch / t_grad,
        "grad_cost_vs_no_grad": t_grad / t_batched,
        "bare_forward_images_per_s": args.batch / t_bare,
        "bare_grad_images_per_s": args.batch / t_bare_grad,
        "no_grad_overhead_vs_bare": t_batched / t_bare - 1.0,
        "grad_overhead_vs_bare": t_grad / t_bare_grad - 1.0,
        # float input vs the processor's uint8 PIL resize: the two paths' score gap.
        "max_abs_score_diff_naive_vs_batched": float((naive_values - batched_values).abs().max()),
    }
    print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in figures.items()}, indent=2))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(figures, handle, indent=2)
    return figures


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
