"""The channels-last layout attacks pick for conv nets on CPU: automatic choice, gradients unchanged, the caller's
parameter tensors never touched (not even during the call), and only the layout's own error retried."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradguard.attacks import PGD
from gradguard.gradients import input_gradient
from gradguard.layout import channels_last_input, wants_channels_last


def conv_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(8 * 3 * 3, 10),
    ).eval()


def test_automatic_choice_is_conv_nets_on_cpu_with_image_batches():
    x = torch.rand(4, 1, 12, 12)
    assert wants_channels_last(conv_net(), x)
    assert not wants_channels_last(nn.Sequential(nn.Flatten(), nn.Linear(144, 10)), x)
    assert not wants_channels_last(conv_net(), x.flatten(1))
    assert not wants_channels_last(lambda t: t.flatten(1), x)


@pytest.mark.parametrize("per_sample", [True, False])
@pytest.mark.parametrize("kind", ["pni", "bayes"])
def test_weight_noise_nets_count_as_conv_nets_and_keep_their_gradients(kind: str, per_sample: bool):
    """PNI and Bayesian layers replace every nn.Conv2d and call F.conv2d themselves: still a conv net."""
    from gradguard.models import randomize, set_generator

    model = randomize(conv_net(), kind, per_sample=per_sample).eval()
    assert not any(isinstance(m, nn.Conv2d) for m in model.modules())
    x, y = torch.rand(8, 1, 12, 12), torch.randint(0, 10, (8,))
    assert wants_channels_last(model, x)
    set_generator(model, torch.Generator().manual_seed(3))
    g_plain, _ = input_gradient(model, x, y, "ce")
    set_generator(model, torch.Generator().manual_seed(3))
    g_cl, _ = input_gradient(channels_last_input(model), x, y, "ce")
    torch.testing.assert_close(g_cl, g_plain, rtol=1e-4, atol=1e-6)


def test_automatic_choice_skips_uninitialized_lazy_parameters():
    x = torch.rand(4, 1, 12, 12)
    assert not wants_channels_last(nn.Sequential(nn.Flatten(), nn.LazyLinear(10)), x)
    assert wants_channels_last(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(10)), x)


def _param_state(model: nn.Module) -> list[tuple[int, int, tuple[int, ...], bool]]:
    return [(id(p), p.data_ptr(), p.stride(), p.is_contiguous()) for p in model.parameters()]


@pytest.mark.parametrize("attack", [PGD(eps=0.1, steps=2), PGD(eps=0.1, steps=2, channels_last=True)])
def test_the_callers_parameters_are_untouched_during_and_after_an_attack(attack: PGD):
    model = conv_net()
    x = torch.rand(6, 1, 12, 12)
    y = model(x).argmax(1)
    named = dict(model.named_parameters())
    before = _param_state(model)
    values = [p.detach().clone() for p in model.parameters()]
    seen_inside: list[list[tuple[int, int, tuple[int, ...], bool]]] = []
    layouts: list[bool] = []

    def look(m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen_inside.append(_param_state(model))
        layouts.append(args[0].is_contiguous(memory_format=torch.channels_last) and not args[0].is_contiguous())

    model[3].register_forward_pre_hook(look)
    attack(model, x, y)
    assert seen_inside and all(state == before for state in seen_inside)  # in a hook, mid-attack
    assert layouts and all(layouts)  # and yet the activations flowed channels-last
    assert _param_state(model) == before and dict(model.named_parameters()) == named
    assert all(torch.equal(p, v) for p, v in zip(model.parameters(), values, strict=True))


class Broken(nn.Module):
    """A conv net whose forward raises an error of its own: the attack must not retry it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        raise RuntimeError("a bug in the model")


def test_a_models_own_runtime_error_propagates_once(recwarn):
    model = Broken()
    x = torch.rand(3, 1, 8, 8)
    assert wants_channels_last(model, x)
    with pytest.raises(RuntimeError, match="a bug in the model"):
        PGD(eps=0.1, steps=3)(model, x, torch.zeros(3, dtype=torch.long))
    assert model.calls == 1
    assert not [w for w in recwarn if "layout" in str(w.message)]


def test_gradients_match_the_contiguous_layout():
    model = conv_net()
    x, y = torch.rand(16, 1, 12, 12), torch.randint(0, 10, (16,))
    g_plain, loss_plain = input_gradient(model, x, y, "ce")
    g_cl, loss_cl = input_gradient(channels_last_input(model), x, y, "ce")
    torch.testing.assert_close(g_cl, g_plain, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(loss_cl, loss_plain, rtol=1e-5, atol=1e-6)
    assert g_cl.shape == x.shape


def test_attack_uses_the_layout_by_default_and_can_be_told_not_to():
    model = conv_net()
    seen: list[bool] = []
    model[3].register_forward_pre_hook(  # the 8-channel activations into the second conv
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)
                                    and not args[0].is_contiguous())
    )
    x = torch.rand(8, 1, 12, 12)
    y = model(x).argmax(1)
    seen.clear()
    a = PGD(eps=0.1, steps=3, early_stop=False)(model, x, y)
    assert seen and all(seen)
    seen.clear()
    b = PGD(eps=0.1, steps=3, early_stop=False, channels_last=False)(model, x, y)
    assert seen and not any(seen)
    assert a.is_contiguous() and a.shape == x.shape
    assert (a - x).abs().max() <= 0.1 + 1e-6 and (b - x).abs().max() <= 0.1 + 1e-6
    assert all(p.is_contiguous() for p in model.parameters())


class ViewFlattenNet(nn.Module):
    """Flattens a multi-channel feature map with `.view`, which needs NCHW-contiguous activations."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 10)

    def forward(self, x):
        h = self.conv(x).relu()
        return self.fc(h.view(h.shape[0], -1))


def test_automatic_layout_falls_back_for_models_that_need_nchw():
    model = ViewFlattenNet().eval()
    x = torch.rand(6, 3, 8, 8)
    y = model(x).argmax(1)
    with torch.no_grad():
        try:
            channels_last_input(model)(x)
        except RuntimeError:
            pass
        else:  # pragma: no cover - the premise of the test
            raise AssertionError("expected this model to fail in channels-last layout")
    with pytest.warns(UserWarning, match="own layout"):
        auto = PGD(eps=0.1, steps=3, early_stop=False)(model, x, y)
    forced_off = PGD(eps=0.1, steps=3, early_stop=False, channels_last=False)(model, x, y)
    assert torch.equal(auto, forced_off)  # same seed, started over: the same attack
    with pytest.raises(RuntimeError):  # asked for explicitly: no silent fallback
        PGD(eps=0.1, steps=3, channels_last=True)(model, x, y)
    assert all(p.is_contiguous() for p in model.parameters())


def test_three_channel_activations_run_channels_last_and_results_keep_the_input_layout():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    model.eval()
    seen: list[bool] = []
    model[2].register_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last) and args[0].shape[1] > 1
                                    and not args[0].is_contiguous())
    )
    x = torch.rand(5, 3, 8, 8)
    y = model(x).argmax(1)
    seen.clear()
    x_adv = PGD(eps=0.1, steps=2, early_stop=False)(model, x, y)
    assert seen and all(seen)  # the activations really flowed in channels-last layout
    assert x_adv.stride() == x.stride()


@pytest.mark.parametrize("inner_choice", [None, False])
def test_bpda_with_a_preprocessing_function_follows_the_inner_attacks_layout_choice(inner_choice):
    """The inner attack sees a plain function (no weights to look at): BPDA's call picks the layout from the model,
    unless the inner attack was told channels_last=False."""
    from gradguard.attacks import BPDA

    model = conv_net()
    seen: list[bool] = []
    model[3].register_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)
                                    and not args[0].is_contiguous())
    )
    x = torch.rand(4, 1, 12, 12)
    y = model(x).argmax(1)
    seen.clear()
    BPDA(attack=PGD(eps=0.1, steps=2, channels_last=inner_choice), preprocess=lambda t: t)(model, x, y)
    assert seen and all(seen) == (inner_choice is None) and any(seen) == (inner_choice is None)
