"""The channels-last layout attacks pick for conv nets on CPU: automatic choice, gradients unchanged, and the
caller's parameter tensors handed back exactly as they were."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradguard.attacks import PGD
from gradguard.gradients import input_gradient
from gradguard.layout import channels_last_layout, wants_channels_last


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
    with channels_last_layout(model):
        g_cl, _ = input_gradient(model, x, y, "ce")
    torch.testing.assert_close(g_cl, g_plain, rtol=1e-4, atol=1e-6)


def test_automatic_choice_skips_uninitialized_lazy_parameters():
    x = torch.rand(4, 1, 12, 12)
    assert not wants_channels_last(nn.Sequential(nn.Flatten(), nn.LazyLinear(10)), x)
    assert wants_channels_last(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(10)), x)


def test_layout_swaps_only_data_and_restores_the_callers_tensors():
    model = conv_net()
    params = list(model.parameters())
    before = [(p.data_ptr(), p.data.stride(), p.clone()) for p in params]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with channels_last_layout(model):
        conv_weights = [p for p in params if p.dim() == 4]
        assert conv_weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights)
        # The one-input-channel first conv counts as channels-last either way; it must get the canonical strides
        # (else its output stays NCHW and the next layer pays a reorder on every call).
        first = model[0].weight
        assert first.stride() == torch.empty_like(first, memory_format=torch.channels_last).stride()
        assert first.stride() != before[0][1]
        assert list(model.parameters()) == params == opt.param_groups[0]["params"]
    for p, (ptr, stride, value) in zip(params, before, strict=True):
        assert p.data_ptr() == ptr and p.data.stride() == stride
        assert torch.equal(p, value)


def test_layout_restores_even_when_the_body_raises():
    model = conv_net()
    ptrs = [p.data_ptr() for p in model.parameters()]
    try:
        with channels_last_layout(model):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert [p.data_ptr() for p in model.parameters()] == ptrs


def test_gradients_match_the_contiguous_layout():
    model = conv_net()
    x, y = torch.rand(16, 1, 12, 12), torch.randint(0, 10, (16,))
    g_plain, loss_plain = input_gradient(model, x, y, "ce")
    with channels_last_layout(model):
        g_cl, loss_cl = input_gradient(model, x, y, "ce")
    torch.testing.assert_close(g_cl, g_plain, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(loss_cl, loss_plain, rtol=1e-5, atol=1e-6)
    assert g_cl.shape == x.shape


def test_attack_uses_the_layout_by_default_and_can_be_told_not_to():
    model = conv_net()
    seen: list[bool] = []
    model[3].register_forward_pre_hook(  # the first conv has 1 input channel: both layouts alike
        lambda m, args: seen.append(m.weight.is_contiguous(memory_format=torch.channels_last))
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
    with channels_last_layout(model), torch.no_grad():
        try:
            model(x)
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


def test_bpda_respects_the_inner_attacks_layout_choice():
    from gradguard.attacks import BPDA

    model = conv_net()
    seen: list[bool] = []
    model[3].register_forward_pre_hook(
        lambda m, args: seen.append(m.weight.is_contiguous(memory_format=torch.channels_last))
    )
    x = torch.rand(4, 1, 12, 12)
    y = model(x).argmax(1)
    seen.clear()
    BPDA(attack=PGD(eps=0.1, steps=2, channels_last=False), preprocess=lambda t: t)(model, x, y)
    assert seen and not any(seen)
