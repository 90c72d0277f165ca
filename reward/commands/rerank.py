"""``artquant rerank``: best-of-N over a folder of images or fresh samples of a diffusion pipeline.

    artquant rerank --reward SPEC --images DIR [--n N] [--out DIR]
    artquant rerank --reward SPEC --pipeline PATH --prompt P [--prompt P2 ...] --n N
                    [--seed S] [--steps K] [--guidance G] [--height H --width W] [--out DIR]
    (both: [--device auto] [--dtype auto] [--verbose])

Folder mode ranks the sorted image files in groups of ``n`` consecutive files
(default: all of them as one group). Pipeline mode draws ``n`` samples per prompt
from a local diffusers ``StableDiffusionPipeline`` folder and keeps the best
(written to ``OUT/best/``). Both write ``OUT/contact_sheet.png`` and
``OUT/rerank.json`` (every candidate's score and components); library logging goes to
``OUT/artquant.log``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from artquant_core.cli_args import (UsageError, add_device_flags, command_parser, positive_int, resolve_device,
                                    resolve_dtype)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def _parser() -> argparse.ArgumentParser:
    p = command_parser("artquant rerank", description=__doc__)
    p.add_argument("--reward", required=True, help="reward spec for load_reward, e.g. 'artquant:PATH'")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help="folder of images to rank")
    source.add_argument("--pipeline", help="local StableDiffusionPipeline folder to sample from")
    p.add_argument("--prompt", action="append", default=None, help="prompt (repeat for several)")
    p.add_argument("--n", type=positive_int, default=None,
                   help="candidates per group / samples per prompt (default: all images as one group)")
    p.add_argument("--out", default="rerank_out", help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed of the first prompt's samples (pipeline mode)")
    p.add_argument("--steps", type=positive_int, default=20, help="denoising steps (pipeline mode)")
    p.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance (pipeline mode)")
    p.add_argument("--height", type=positive_int, default=None, help="sample height (default: the pipeline's)")
    p.add_argument("--width", type=positive_int, default=None, help="sample width (default: the pipeline's)")
    p.add_argument("--normalize", default="none", help="CompositeReward normalisation for a '+' spec")
    add_device_flags(p)
    p.add_argument("--verbose", action="store_true",
                   help="show library logging live (it always goes to OUT/artquant.log)")
    return p


def check_inputs(args: argparse.Namespace) -> None:
    """The source folder exists and pipeline mode has what it needs — checked before any model loads."""
    if args.images is not None:
        if not Path(args.images).is_dir():
            raise NotADirectoryError(f"--images: not a folder: {args.images}")
        return
    if not args.prompt:
        raise UsageError("--pipeline needs at least one --prompt")
    if not args.n:
        raise UsageError("--pipeline needs --n N (samples per prompt, N >= 1)")
    path = Path(args.pipeline)
    if not path.is_dir():
        raise NotADirectoryError(f"--pipeline: not a folder: {path}")
    if not (path / "model_index.json").is_file():
        raise FileNotFoundError(f"--pipeline: no diffusers pipeline (model_index.json) in {path}")


def _folder_images(folder: str) -> tuple[list, list[str]]:
    from artquant_core.images import load_image

    root = Path(folder)
    files = sorted(f for f in root.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"--images: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {root}")
    return [load_image(f) for f in files], [f.name for f in files]


def _sample(args: argparse.Namespace, device: str) -> tuple[object, list[str], list[str]]:
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(args.pipeline), safety_checker=None,
                                                   requires_safety_checker=False).to(device)
    pipe.set_progress_bar_config(disable=True)
    batches, names = [], []
    for p_index, prompt in enumerate(args.prompt):
        generator = torch.Generator().manual_seed(args.seed + p_index)  # CPU: same samples on any device
        out = pipe(prompt, num_images_per_prompt=args.n, num_inference_steps=args.steps,
                   guidance_scale=args.guidance, generator=generator, output_type="pt",
                   height=args.height, width=args.width)
        batches.append(out.images.float().clamp(0, 1).cpu())
        names += [f"prompt{p_index:02d}_sample{k:02d}" for k in range(args.n)]
    return torch.cat(batches), names, list(args.prompt)


def _load_reward(args: argparse.Namespace, device: str, dtype):
    """The reward of ``--reward`` on ``--device``; ``--dtype`` below float32 autocasts ArtQuant rewards."""
    import torch

    from reward.spec import load_reward

    autocast_dtype = None if dtype == torch.float32 else dtype
    return load_reward(args.reward, normalize=args.normalize, device=device, autocast_dtype=autocast_dtype)


def _chunk_prompts(prompts: list[str] | None, start: int, stop: int, n: int, count: int) -> list[str] | None:
    """The prompts of candidates ``start:stop`` (prompts given one per image, or one per group of ``n``)."""
    if prompts is None:
        return None
    return prompts[start:stop] if len(prompts) == count else prompts[start // n:stop // n]


def rank_with_progress(images, prompts: list[str] | None, reward, n: int, chunk: int = 32):
    """:func:`reward.rerank.best_of_n` over whole groups of about ``chunk`` candidates at a time, with one
    progress bar over the candidates; the result equals one call over all of them."""
    import torch
    from tqdm.auto import tqdm

    from reward.rerank import RerankResult, best_of_n

    count, step = len(images), max(1, chunk // n) * n
    parts, offsets = [], list(range(0, count, step))
    with tqdm(total=count, desc="rerank", unit="img", leave=False) as bar:
        for start in offsets:
            stop = min(start + step, count)
            parts.append(best_of_n(images[start:stop], _chunk_prompts(prompts, start, stop, n, count), reward, n))
            bar.update(stop - start)
    return RerankResult(
        indices=torch.cat([part.indices + offset for part, offset in zip(parts, offsets)]),
        scores=torch.cat([part.scores for part in parts]), n=n,
        components={key: torch.cat([part.components[key] for part in parts]) for key in parts[0].components},
        prompts=None if prompts is None else [p for part in parts for p in part.prompts])


def main(argv: list[str]) -> int:
    from artquant_core.console import log_to_folder
    from reward.rerank import write_rerank_report

    args = _parser().parse_args(argv)
    check_inputs(args)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    log_to_folder(args.out)
    if args.images:
        images, names = _folder_images(args.images)
        n = args.n or len(images)
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
        images, names, prompts = _sample(args, device)
        n, labels = args.n, prompts
        extra = {"pipeline": str(args.pipeline), "seed": args.seed, "steps": args.steps,
                 "guidance": args.guidance}
    result = rank_with_progress(images, prompts, _load_reward(args, device, dtype), n)
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
