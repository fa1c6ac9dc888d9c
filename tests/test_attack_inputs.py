"""Bad inputs are refused at the attack and evaluation boundary, before any work, with the caller's tensors
untouched: non-float, non-finite or out-of-box images, labels that are not class indices, an eps that is not a
number. APGD-T used to return x unchanged for label 10, -1 or float labels (the sample then looked robust)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from _evaluation_toys import Quadrant, quadrant_data
from gradguard.attacks import APGD, APGDT, FGSM, PGD, CWLinf, Square
from gradguard.evaluation import evaluate
from gradguard.inputs import check_eps

ATTACKS: dict[str, Callable[[], object]] = {
    "pgd": lambda: PGD(eps=0.1, steps=3),
    "apgd": lambda: APGD(eps=0.1, steps=3),
    "apgd-t": lambda: APGDT(eps=0.1, steps=3, n_target_classes=2),
    "fgsm": lambda: FGSM(eps=0.1),
    "square": lambda: Square(eps=0.1, n_queries=5),
    "cw": lambda: CWLinf(eps=0.1, steps=3),
}


def _nan_pixel(x: Tensor) -> Tensor:
    x = x.clone()
    x[1, 0, 2, 2] = float("nan")
    return x


BAD: list[tuple[str, Callable[[Tensor, Tensor], tuple[Tensor, Tensor]], type, str]] = [
    ("label 10", lambda x, y: (x, torch.where(y == 0, 10, y)), ValueError, "class indices in [0, 4)"),
    ("label -1", lambda x, y: (x, torch.where(y == 0, -1, y)), ValueError, "class indices >= 0, got -1"),
    ("float labels", lambda x, y: (x, y.float()), TypeError, "integer tensor of class indices"),
    ("2-d labels", lambda x, y: (x, y[:, None]), ValueError, "one-dimensional"),
    ("NaN pixel", lambda x, y: (_nan_pixel(x), y), ValueError, "images must be finite, got 1 NaN"),
    ("0-255 images", lambda x, y: (x * 255, y), ValueError, "images must be in [0, 1]; got max 2"),
    ("below 0", lambda x, y: (x - 0.5, y), ValueError, "images must be in [0, 1]; got min"),
    ("uint8", lambda x, y: ((x * 255).to(torch.uint8), y), TypeError, "floating-point tensor in [0, 1]"),
    ("float64", lambda x, y: (x.double(), y), TypeError, "images are torch.float64 but the model's parameters"),
    ("sizes differ", lambda x, y: (x, y[:-1]), ValueError, "samples but y has"),
]


@pytest.mark.parametrize("attack", list(ATTACKS))
@pytest.mark.parametrize(("case", "make", "error", "fragment"), BAD, ids=[b[0] for b in BAD])
def test_attacks_refuse_bad_inputs_and_leave_them_alone(
    attack: str, case: str, make: Callable, error: type, fragment: str
) -> None:
    x, y = make(*quadrant_data(8))
    x_before, y_before = x.clone(), y.clone()
    with pytest.raises(error, match=re.escape(fragment)):
        ATTACKS[attack]()(Quadrant(), x, y)
    assert torch.equal(x.nan_to_num(), x_before.nan_to_num()) and torch.equal(y, y_before)


def test_0_255_message_says_divide_by_255() -> None:
    x, y = quadrant_data(8)
    x = (x * 255).round()
    with pytest.raises(ValueError, match=rf"images must be in \[0, 1\]; got max {x.max():g}: divide by 255"):
        PGD(eps=0.1, steps=2)(Quadrant(), x, y)


@pytest.mark.parametrize(("eps", "error"), [("0.3", TypeError), (float("nan"), ValueError), (-0.1, ValueError),
                                            (float("inf"), ValueError), (True, TypeError), ([0.1], TypeError)])
def test_eps_must_be_a_real_number(eps: object, error: type) -> None:
    with pytest.raises(error, match="eps must be"):
        PGD(eps=eps)
    with pytest.raises(error, match="eps"):
        check_eps(eps)


class _Counting(Quadrant):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        return super().forward(x)


@pytest.mark.parametrize(("case", "make", "error", "fragment"), BAD[1:9], ids=[b[0] for b in BAD[1:9]])
def test_evaluate_refuses_bad_inputs_before_any_forward(case: str, make: Callable, error: type, fragment: str) -> None:
    x, y = make(*quadrant_data(8))
    model = _Counting()
    with pytest.raises(error):
        evaluate(model, x, y, "standard", [0.1], quick=True, run_checks=False)
    assert model.calls == 0


@pytest.mark.parametrize("eps", [["0.3"], [float("nan")], [-0.1]])
def test_evaluate_refuses_bad_eps_before_any_forward(eps: list) -> None:
    model = _Counting()
    with pytest.raises((TypeError, ValueError), match=r"eps\[0\]"):
        evaluate(model, *quadrant_data(8), "standard", eps, quick=True, run_checks=False)
    assert model.calls == 0


def test_evaluate_refuses_labels_beyond_the_model_outputs() -> None:
    x, y = quadrant_data(8)
    with pytest.raises(ValueError, match=r"class indices in \[0, 4\) for a model with 4 outputs, got 7"):
        evaluate(Quadrant(), x, torch.where(y == 0, 7, y), "standard", [0.1], quick=True, run_checks=False)


def test_evaluate_takes_the_largest_seed_a_config_allows() -> None:
    x, y = quadrant_data(8)
    result = evaluate(Quadrant(), x, y, {"fgsm": FGSM(eps=0.1)}, [0.1], seed=2**63 - 1, run_checks=False)
    assert result.seed == 2**63 - 1
