"""CPU time of one training step (recipe.step + backward, batch 100, MNIST-sized, strided-cnn, one thread) for
PGD-AT-10 and for SGN hidden taps on a PGD-10 start with two response sizes: what sizes the study's pgd10_sgnarch run.
Then the cost of an input gradient through the active network (SGN's input response at inference) against the plain
one: what every white-box attack step on sgn_active costs.

    OMP_NUM_THREADS=1 python benchmarks/sgn_arch_cost.py
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from gradguard.models import SelfGradientNetwork, build_model
from gradguard.models.sgn_active import activate
from gradguard.threat import threat_model
from gradguard.training.recipe import StepContext
from gradguard.training.recipes import build_recipe

TAPS = ["net.features.3", "net.classifier.1"]
PGD_START = {"start": "pgd", "start_steps": 10, "refine_steps": 0, "clean_weight": 1.0, "taps": TAPS}
CASES = [("pgd_at", {"steps": 10}, "PGD-AT-10"),
         ("sgn", PGD_START, "PGD-10 start + SGN taps, response 8 x 3 layers"),
         ("sgn", {**PGD_START, "response_hidden": 4, "response_layers": 2}, "PGD-10 start + SGN taps, response 4 x 2"),
         ("pgd_at", {"steps": 10}, "PGD-AT-10 (again: drift of a shared machine)")]


def cpu_seconds_per_step(recipe_name: str, args: dict, reps: int = 10) -> float:
    recipe = build_recipe(recipe_name, **args)
    model = recipe.wrap(build_model("strided-cnn", "mnist"))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(100, 1, 28, 28, generator=g), torch.randint(0, 10, (100,), generator=g)
    ctx = StepContext(threat_model("linf", 0.3), g, 0, 0.0)
    for i in range(reps + 1):  # the first step warms up
        if i == 1:
            t0 = time.process_time()
        recipe.step(model, x, y, ctx).loss.backward()
    return (time.process_time() - t0) / reps


def cpu_seconds_per_input_gradient(model: torch.nn.Module, reps: int = 25) -> float:
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(100, 1, 28, 28, generator=g), torch.randint(0, 10, (100,), generator=g)
    t0 = time.process_time()
    for _ in range(reps):
        z = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(z), y), [z])
    return (time.process_time() - t0) / reps


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    for name, args, label in CASES:
        print(f"{cpu_seconds_per_step(name, args):.3f} s CPU per batch  {label}")
    plain = build_model("strided-cnn", "mnist").eval()
    active = activate(SelfGradientNetwork(plain, ["input"]), eps=0.3).eval()
    for label, model in [("plain", plain), ("active", active), ("plain", plain), ("active", active)]:
        print(f"{cpu_seconds_per_input_gradient(model):.4f} s CPU per input gradient of 100 images  {label}")


if __name__ == "__main__":
    main()
