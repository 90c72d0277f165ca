"""``artquant rerank``: best-of-N over a folder of images or fresh samples of a diffusion pipeline.

    artquant rerank --reward SPEC --images DIR [--n N] [--out DIR]
    artquant rerank --reward SPEC --pipeline PATH --prompt P [--prompt P2 ...] --n N
                    [--seed S] [--steps K] [--guidance G] [--height H --width W] [--out DIR]

Folder mode ranks the sorted image files in groups of ``n`` consecutive files
(default: all of them as one group). Pipeline mode draws ``n`` samples per prompt
from a local diffusers ``StableDiffusionPipeline`` folder and keeps the best
(written to ``OUT/best/``). Both write ``OUT/contact_sheet.png`` and
``OUT/rerank.json`` (every candidate's score and components).
"""

from __future__ import annotations

import argparse
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="artquant rerank", description=__doc__.split("\n\n")[0])
    p.add_argument("--reward", required=True, help="reward spec for load_reward, e.g. 'artquant:PATH'")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help="folder of images to rank")
    source.add_argument("--pipeline", help="local StableDiffusionPipeline folder to sample from")
    p.add_argument("--prompt", action="append", default=None, help="prompt (repeat for several)")
    p.add_argument("--n", type=int, default=None, help="candidates per group / samples per prompt")
    p.add_argument("--out", default="rerank_out", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=20, help="denoising steps (pipeline mode)")
    p.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance (pipeline mode)")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--normalize", default="none", help="CompositeReward normalisation for a '+' spec")
    return p


def _parse(argv: list[str]) -> argparse.Namespace:
    try:
        return _parser().parse_args(argv)
    except SystemExit as exc:
        if exc.code == 0:  # --help
            raise
        raise ValueError(f"invalid arguments: {' '.join(argv)}") from None


def _folder_images(folder: str) -> tuple[list, list[str]]:
    from artquant_core.images import load_image

    root = Path(folder)
    if not root.is_dir():
        raise NotADirectoryError(f"--images: not a folder: {root}")
    files = sorted(f for f in root.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"--images: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {root}")
    return [load_image(f) for f in files], [f.name for f in files]


def _sample(args: argparse.Namespace) -> tuple[object, list[str], list[str]]:
    if not args.prompt:
        raise ValueError("--pipeline needs at least one --prompt")
    if not args.n or args.n < 1:
        raise ValueError("--pipeline needs --n N (samples per prompt, N >= 1)")
    path = Path(args.pipeline)
    if not (path / "model_index.json").is_file():
        raise FileNotFoundError(f"--pipeline: no diffusers pipeline (model_index.json) in {path}")
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(path), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    batches, names = [], []
    for p_index, prompt in enumerate(args.prompt):
        generator = torch.Generator().manual_seed(args.seed + p_index)
        out = pipe(prompt, num_images_per_prompt=args.n, num_inference_steps=args.steps,
                   guidance_scale=args.guidance, generator=generator, output_type="pt",
                   height=args.height, width=args.width)
        batches.append(out.images.float().clamp(0, 1).cpu())
        names += [f"prompt{p_index:02d}_sample{k:02d}" for k in range(args.n)]
    return torch.cat(batches), names, list(args.prompt)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    from reward.rerank import best_of_n, write_rerank_report
    from reward.spec import load_reward

    reward = load_reward(args.reward, normalize=args.normalize)
    if args.images:
        images, names = _folder_images(args.images)
        n = args.n or len(images)
        if n < 1:
            raise ValueError(f"--n must be >= 1, got {n}")
        if len(images) % n:
            raise ValueError(f"--images: {len(images)} files in {args.images} cannot be split into groups "
                             f"of --n {n}")
        groups = len(images) // n
        prompts = args.prompt
        if prompts is not None and len(prompts) not in (groups, len(images)):
            raise ValueError(f"--prompt given {len(prompts)} times; expected {groups} (one per group) or none")
        labels = prompts if prompts and len(prompts) == groups else [f"group {g}" for g in range(groups)]
        extra = {"images_dir": str(args.images)}
    else:
        images, names, prompts = _sample(args)
        n, labels = args.n, prompts
        extra = {"pipeline": str(args.pipeline), "seed": args.seed, "steps": args.steps,
                 "guidance": args.guidance}
    result = best_of_n(images, prompts, reward, n)
    paths = write_rerank_report(result, images, args.out, args.reward, names=names, group_labels=labels,
                                extra=extra)
    if args.pipeline:
        from artquant_core.images import to_pil_images

        best_dir = Path(args.out) / "best"
        best_dir.mkdir(parents=True, exist_ok=True)
        pil = to_pil_images(images)
        for g, index in enumerate(result.indices.tolist()):
            pil[index].save(best_dir / f"prompt{g:02d}_best.png")
    for g, index in enumerate(result.indices.tolist()):
        print(f"{labels[g]}: best {names[index]} (reward {float(result.scores[index]):.4f})")
    print(f"wrote {paths['contact_sheet']} and {paths['json']}")
    return 0
