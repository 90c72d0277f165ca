"""Which words of its caption does a painter listen to?

For SynthArt paintings of an unseen seed, the painter's UNet predicts its target (v or noise) from the
noised latents once with the true caption and once with one part of the caption swapped for another
value (the main shape, its colour, its position, the small shape, the sky colour, the horizon), and once
with the empty caption. The same noise and timesteps serve every variant, so the loss increase a swap
causes is a paired difference; it is ~0 for a part the painter ignores.

    python -m scripts.caption_use --painter alignment/pretrained/tiny_painter

Measured on the first shipped painter (UNet and text encoder trained together): the main-shape swap
changes the loss by 0.0000 at every noise level while a colour swap changes it clearly: its samples
draw the right colours and chance-level shapes (``scripts/bench_painter.py``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from artquant_core.synthart.attributes import SHAPES
from artquant_core.synthart.captions import COLOUR_WORDS, HORIZON_WORDS, POSITION_PHRASES, parse_caption

TIMESTEPS = (100, 300, 500, 700, 900)
PARTS = ("main_shape", "main_colour", "position", "small_shape", "sky", "horizon")


def _shift(values, current: str, by: int) -> str:
    return values[(list(values).index(current) + by) % len(values)]


def _with_article(clause_words: list[str]) -> list[str]:
    clause_words[0] = "an" if clause_words[1][0] in "aeiou" else "a"
    return clause_words


def swap_part(caption: str, part: str) -> str:
    """``caption`` with one part replaced by another value of its kind (``ValueError`` for a caption that
    is not a SynthArt one, or an unknown part).

    The words are swapped in place rather than through ``parse_caption`` / ``compose_caption``: parsing
    drops the tone words (``pale``, ``dark``), and recomposing would change those too."""
    parse_caption(caption)  # names a caption of another form
    clauses = caption.split(", ")
    main = clauses[0].split(" ")
    if part == "main_shape":
        main[2] = _shift(SHAPES, main[2], 2)
    elif part == "main_colour":
        main = _with_article([main[0], _shift(COLOUR_WORDS, main[1], 4), *main[2:]])
    elif part == "position":
        position = " ".join(main[3:])
        main = main[:3] + _shift(POSITION_PHRASES, position, 4).split(" ")
    elif part == "small_shape":
        small = clauses[1].split(" ")
        clauses[1] = " ".join(small[:-1] + [_shift(SHAPES, small[-1], 2)])
    elif part == "sky":
        sky = clauses[2].split(" ")
        sky[-2] = _shift(COLOUR_WORDS, sky[-2], 4)
        clauses[2] = " ".join(sky)
    elif part == "horizon":
        horizon = clauses[4].split(" ")
        clauses[4] = " ".join([_shift(HORIZON_WORDS, horizon[0], 1), *horizon[1:]])
    else:
        raise ValueError(f"unknown caption part {part!r} (one of {PARTS})")
    clauses[0] = " ".join(main)
    return ", ".join(clauses)


def caption_use(pipe, n: int = 64, seed: int = 9100, timesteps: tuple[int, ...] = TIMESTEPS,
                noise_seed: int = 0) -> dict:
    """Per caption part and timestep: the mean paired increase of the UNet's loss when that part is
    swapped (and when the caption is empty), with its standard error over the ``n`` paintings."""
    import torch

    from alignment.painter_training import encode_prompts, uint8_to_vae_input
    from scripts.bench_painter import synthart_set

    images, captions = synthart_set(seed, n, pipe.vae.config.sample_size)
    variants = {"true": captions, "empty": [""] * n, **{p: [swap_part(c, p) for c in captions] for p in PARTS}}
    scheduler, unet = pipe.scheduler, pipe.unet
    pixels = torch.from_numpy(images)
    generator = torch.Generator().manual_seed(noise_seed)
    result: dict = {name: {} for name in variants if name != "true"}
    with torch.no_grad():
        latents = pipe.vae.encode(uint8_to_vae_input(pixels)).latent_dist.mean * pipe.vae.config.scaling_factor
        contexts = {name: encode_prompts(pipe.tokenizer, pipe.text_encoder, texts) for name, texts in variants.items()}
        for t in timesteps:
            noise = torch.randn(latents.shape, generator=generator)
            steps = torch.full((n,), t)
            noisy = scheduler.add_noise(latents, noise, steps)
            target = (scheduler.get_velocity(latents, noise, steps)
                      if scheduler.config.prediction_type == "v_prediction" else noise)
            losses = {name: ((unet(noisy, steps, encoder_hidden_states=context).sample - target) ** 2)
                      .mean(dim=(1, 2, 3)).numpy() for name, context in contexts.items()}
            for name in result:
                diff = losses[name] - losses["true"]
                result[name][int(t)] = {"increase": round(float(diff.mean()), 5),
                                        "se": round(float(diff.std(ddof=1) / np.sqrt(n)), 5),
                                        "true_loss": round(float(losses["true"].mean()), 5)}
    return result


def format_table(result: dict) -> str:
    timesteps = list(next(iter(result.values())))
    lines = ["loss increase when a caption part is swapped (mean +- SE; ~0: the painter ignores it)",
             f"{'part':<12}" + "".join(f"{'t=' + str(t):>18}" for t in timesteps)]
    for name, per_t in result.items():
        lines.append(f"{name:<12}" + "".join(f"{per_t[t]['increase']:>+10.4f} +-{per_t[t]['se']:.4f}"
                                              for t in timesteps))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--painter", required=True, help="a StableDiffusionPipeline folder")
    parser.add_argument("--n", type=int, default=64, help="SynthArt paintings")
    parser.add_argument("--seed", type=int, default=9100, help="SynthArt seed (unseen by the painter)")
    parser.add_argument("--out", default=None, help="write the result here as JSON")
    args = parser.parse_args(argv)
    painter = Path(args.painter)
    if not (painter / "model_index.json").is_file():
        parser.error(f"--painter {painter}: no model_index.json (not a diffusers pipeline folder)")
    from scripts.bench_painter import load_pipeline

    pipe = load_pipeline(painter)
    result = caption_use(pipe, n=args.n, seed=args.seed)
    print(format_table(result))
    if args.out:
        Path(args.out).write_text(json.dumps({"painter": str(painter), "n": args.n, "seed": args.seed,
                                              "increase": result}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
