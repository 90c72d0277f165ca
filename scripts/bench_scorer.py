"""Throughput of the tiny scorer's forward pass (no grad) on the tensor and PIL paths.

    OMP_NUM_THREADS=2 python -m scripts.bench_scorer [--family qwen2_5_vl|llava] [--batch 16] [--size 64] [--shipped]

Prints images/s for ``score`` on a float tensor batch, on a list of PIL images,
and with gradients to the pixels (fwd+bwd), after one warm-up call.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def _rate(fn, n_images: int, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return n_images * repeats / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", default="qwen2_5_vl", choices=("qwen2_5_vl", "llava"))
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--shipped", action="store_true", help="the shipped pre-trained weights (Qwen2.5-VL tiny)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from artquant_core.images import to_pil_images
    from artquant_core.tiny import build_tiny_scorer

    scorer = build_tiny_scorer(pretrained=args.shipped, family=args.family).eval()
    x = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    pil = to_pil_images(x)

    def grad_step():
        xg = x.clone().requires_grad_(True)
        scorer.score(xg).score.sum().backward()

    result = {
        "family": args.family, "shipped": args.shipped, "batch": args.batch, "size": args.size, "threads": args.threads,
        "params": sum(q.numel() for q in scorer.parameters()),
        "tensor_images_per_s": round(_rate(lambda: scorer.score(x), args.batch, args.repeats), 1),
        "pil_images_per_s": round(_rate(lambda: scorer.score(pil), args.batch, args.repeats), 1),
        "grad_images_per_s": round(_rate(grad_step, args.batch, max(args.repeats // 2, 1)), 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
