"""Attack losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from gradguard.losses import ce, cw, dlr, dlr_targeted, get_loss, is_targeted, margin, success

LOGITS = torch.tensor([[4.0, 1.0, 3.0, 0.0, -1.0], [0.0, 2.0, 1.0, 5.0, 3.0]])
Y = torch.tensor([0, 1])
T = torch.tensor([2, 4])


def test_margin_and_cw() -> None:
    torch.testing.assert_close(margin(LOGITS, Y), torch.tensor([1.0, -3.0]))
    torch.testing.assert_close(cw(LOGITS, Y), torch.tensor([-1.0, 3.0]))
    torch.testing.assert_close(cw(LOGITS, Y, kappa=2.0), torch.tensor([-1.0, 2.0]))
    torch.testing.assert_close(get_loss("cw", targeted=True)(LOGITS, Y, T), torch.tensor([-1.0, -2.0]))


def test_ce_and_targeted_ce() -> None:
    lse = torch.logsumexp(LOGITS, 1)
    torch.testing.assert_close(ce(LOGITS, Y), lse - torch.tensor([4.0, 2.0]))
    torch.testing.assert_close(get_loss("ce-targeted")(LOGITS, Y, T), -(lse - torch.tensor([3.0, 3.0])))


def test_dlr_values_and_scale_invariance() -> None:
    # sample 0: z_y=4 is top; -(4 - 3) / (4 - 1) ; sample 1: -(2 - 5) / (5 - 2)
    torch.testing.assert_close(dlr(LOGITS, Y), torch.tensor([-1.0 / 3.0, 1.0]))
    torch.testing.assert_close(dlr(7.0 * LOGITS + 2.0, Y), dlr(LOGITS, Y))
    # targeted: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)
    expect = torch.tensor([-(4.0 - 3.0) / (4.0 - 0.5), -(2.0 - 3.0) / (5.0 - 1.5)])
    torch.testing.assert_close(dlr_targeted(LOGITS, Y, T), expect)


def test_get_loss_names_and_errors() -> None:
    assert get_loss("dlr") is dlr
    assert get_loss("DLR", targeted=True) is dlr_targeted
    assert is_targeted("ce-targeted") and not is_targeted("ce")
    f = get_loss("cw", kappa=0.5)
    assert math.isclose(float(f(LOGITS, Y)[1]), 0.5)
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss("hinge")
    with pytest.raises(ValueError, match="target"):
        get_loss("dlr-targeted")(LOGITS, Y)
    with pytest.raises(ValueError, match="4 classes"):
        dlr_targeted(LOGITS[:, :3], Y, torch.tensor([1, 2]))


def test_losses_are_per_sample_and_success() -> None:
    for name in ("ce", "cw", "dlr"):
        assert get_loss(name)(LOGITS, Y).shape == (2,)
    assert success(LOGITS, Y).tolist() == [False, True]
    assert success(LOGITS, Y, T).tolist() == [False, False]
    assert success(LOGITS, Y, torch.tensor([0, 3])).tolist() == [True, True]
