"""Distributed evaluation: 2 Gloo processes on CPU shard the test set and all-gather the success tensors."""

from __future__ import annotations

import json

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import _evaluation_toys as toys
from gradguard.attacks import PGD
from gradguard.evaluation import evaluate


@pytest.mark.slow  # two spawned interpreters: ~20 s on the shared 2-core machine
def test_two_gloo_ranks_match_a_single_process(tmp_path) -> None:
    assert dist.is_available()
    mp.spawn(toys.distributed_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]

    x, y = toys.quadrant_data(30)
    attacks = {"pgd": lambda eps: PGD(eps=eps, steps=5), "oracle": lambda eps: toys.Oracle(eps, only=x[::3])}
    single = evaluate(toys.Shattered(), x, y, attacks, eps=[0.1, 0.4], check_n=8).to_dict()

    for d in ranks:
        assert d["meta"]["world_size"] == 2
        for key in ("n", "clean_accuracy", "robust_accuracy", "success", "clean_correct"):
            assert d[key] == single[key], key
        assert d["robust_accuracy"] == [1.0, 20 / 30]  # the oracle breaks every third point at eps 0.4
        for name in ("pgd", "oracle"):
            assert d["attacks"][name]["success"] == single["attacks"][name]["success"]
            assert d["attacks"][name]["attacked"] == single["attacks"][name]["attacked"]
        flags = {f["name"]: f for f in d["flags"]}
        assert flags["zero_gradients"]["values"]["checked"] == 16  # 8 per rank, summed
        assert flags["gradient_free_stronger"]["triggered"]
    assert ranks[0]["success"] == ranks[1]["success"]
    assert torch.distributed.is_initialized() is False


@pytest.mark.slow
def test_attack_wall_time_is_the_slowest_rank_not_the_sum(tmp_path) -> None:
    """Ranks attack their shards in parallel: an attack taking 0.4 s on each of 2 ranks took 0.4 s, not 0.8 s."""
    mp.spawn(toys.timing_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for r in range(2):
        d = json.loads((tmp_path / f"timing{r}.json").read_text())
        (wall,) = d["attacks"]["sleepy"]["wall_s"]
        assert 0.4 <= wall < 0.7, wall
        assert wall <= d["meta"]["wall_s"]
