"""Run under ``accelerate launch --num_processes 2``: train one epoch, write this rank's trained weights.

Each rank samples different prompts and noise, so without gradient synchronisation the ranks' weights
part after the first update. ``python tests/ddp_sync_worker.py {reward_grad,flow_grpo} TINY_SD OUT_DIR``
(``flow_grpo``: TINY_SD is a tiny SD3 folder).
"""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file


def main(kind: str, tiny_sd: str, out: str) -> None:
    from alignment import RewardGradConfig, RewardGradTrainer

    shared = dict(pretrained_model=tiny_sd, output_dir=out, num_epochs=1, sample_num_steps=3, eval_every=0,
                  checkpoint_every=0, prompts=["a painting of a cat", "a painting of a dog"], reward="brightness",
                  learning_rate=1e-2, train_batch_size=1, train_gradient_accumulation_steps=2)
    if kind == "flow_grpo":  # two groups of 2 per process, two micro-batches accumulated
        from alignment import FlowGRPOConfig, FlowGRPOTrainer

        trainer = FlowGRPOTrainer(FlowGRPOConfig(group_size=2, sample_batch_size=2, sample_num_batches_per_epoch=2,
                                                 max_sequence_length=8, sde_window_size=2, clip_range=0.2,
                                                 **shared))
    elif kind == "reward_grad":  # two gradient steps through checkpointed UNet calls, two micro-batches accumulated
        trainer = RewardGradTrainer(RewardGradConfig(truncated_backprop_steps=2, train_steps_per_epoch=2,
                                                     **shared))
    else:
        raise SystemExit(f"unknown kind {kind!r}: reward_grad or flow_grpo")
    trainer.train_epoch(0)
    unet = trainer.setup.policy_unet()
    weights = {n: p.detach().contiguous() for n, p in unet.named_parameters() if p.requires_grad}
    save_file(weights, str(Path(out) / f"rank{trainer.accelerator.process_index}.safetensors"))
    trainer.setup.finish()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(*sys.argv[1:4])
