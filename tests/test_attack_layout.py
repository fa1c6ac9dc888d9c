"""The channels-last layout attacks pick for conv nets on CPU: automatic choice, gradients unchanged, and the
caller's parameter tensors handed back exactly as they were."""

from __future__ import annotations

import torch
from torch import nn

from gradguard.attacks import PGD
from gradguard.attacks.base import channels_last_layout, wants_channels_last
from gradguard.gradients import input_gradient


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
