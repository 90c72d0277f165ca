"""Running z-score statistics agree across processes (torch.distributed, gloo on CPU)."""

import json
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import pytest


def _worker(rank, world, init_file, out_dir):
    os.environ["OMP_NUM_THREADS"] = "1"
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        from reward.composite import CompositeReward
        from reward.simple import Brightness

        # Rank 0 sees a black and a white image, rank 1 three mid-grey images.
        levels = [[0.0, 1.0], [0.5, 0.5, 0.5]][rank]
        images = torch.stack([torch.full((3, 4, 4), v) for v in levels])
        comp = CompositeReward({"b": (Brightness(), 1.0)}, normalize="running_zscore")
        total = comp(images)
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
            json.dump({"state": comp.state_dict(), "total": total.tolist()}, handle)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # spawns two processes
def test_running_stats_are_merged_across_ranks(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert results[0]["state"] == results[1]["state"]
    stats = results[0]["state"]["stats"]["b"]
    values = torch.tensor([0.0, 1.0, 0.5, 0.5, 0.5], dtype=torch.float64)
    assert stats["count"] == 5
    assert abs(stats["mean"] - 0.5) < 1e-12
    assert abs(stats["m2"] - float(((values - 0.5) ** 2).sum())) < 1e-12
    std = float(values.std(unbiased=False))
    assert torch.allclose(torch.tensor(results[0]["total"]), torch.tensor([-0.5 / std, 0.5 / std]))
    assert results[1]["total"] == [0.0, 0.0, 0.0]
