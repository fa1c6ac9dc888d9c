"""Model zoo: shapes for every model/dataset pair, parameter counts against the published architectures,
normalization inside the model, clear errors for unsupported sizes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradguard.data.specs import SPECS, get_spec
from gradguard.models import Normalize, ZooModel, build_model, list_models
from gradguard.models._common import SizeError

# (model, dataset) pairs the architecture cannot take: a fixed layout that does not fit the image size
UNSUPPORTED = {
    ("smallcnn", "digits"), ("lenet5", "digits"),
    ("vgg16", "mnist"), ("vgg16", "fashion-mnist"), ("vgg16", "digits"),
    ("stl10-cnn", "mnist"), ("stl10-cnn", "fashion-mnist"), ("stl10-cnn", "cifar10"), ("stl10-cnn", "digits"),
}

# Published / hand-counted totals (weights + biases + BN affine), see docs/models.md.
PARAMS = {
    ("smallcnn", "mnist"): 312_202,          # TRADES SmallCNN: 320+9248+18496+36928+205000+40200+2010
    ("madry-cnn", "mnist"): 3_274_634,       # Madry et al. MNIST CNN, ~3.27 M
    ("lenet5", "mnist"): 61_706,             # LeNet-5: 156+2416+48120+10164+850
    ("preact-resnet18", "cifar10"): 11_172_170,  # ~11.17 M (with the final BN of Rice et al.'s PreActResNet18)
    ("wrn-28-10", "cifar10"): 36_479_194,    # ~36.48 M
    ("wrn-34-10", "cifar10"): 46_160_474,    # ~46.16 M (TRADES / Madry WRN-34-10)
    ("vgg16", "cifar10"): 14_728_266,        # kuangliu / Adv-BNN CIFAR VGG-16 with BN
    ("stl10-cnn", "stl10"): 2_166_282,       # Adv-BNN 'Aaron': convs 32..512 + BN + linear 512->10
    ("cnn-bn", "cifar10"): 94_762,           # convs 864+18432+73728 (no bias) + BN 64+128+256 + linear 1290
    ("preact-resnet-mini", "cifar10"): 77_850,  # stem 432 + blocks 4672+14432+57536 + BN 128 + linear 650
}


def _meta_model(name: str, dataset: str) -> nn.Module:
    with torch.device("meta"):
        return build_model(name, dataset)


def test_list_models_has_the_agreed_names() -> None:
    assert set(list_models()) >= {"smallcnn", "madry-cnn", "lenet5", "preact-resnet18", "wrn-28-10", "wrn-34-10",
                                  "vgg16", "stl10-cnn", "cnn-bn", "preact-resnet-mini"}


@pytest.mark.parametrize("name", ["smallcnn", "madry-cnn", "lenet5", "preact-resnet18", "wrn-28-10", "wrn-34-10",
                                  "vgg16", "stl10-cnn", "cnn-bn", "preact-resnet-mini"])
@pytest.mark.parametrize("dataset", sorted(SPECS))
def test_output_shape_or_clear_error(name: str, dataset: str) -> None:
    """Shapes through the meta device (no arithmetic), for every model on every dataset."""
    spec = get_spec(dataset)
    if (name, dataset) in UNSUPPORTED:
        with pytest.raises(SizeError, match=rf"{name}.*{dataset}.*{spec.size}x{spec.size}.*needs"):
            _meta_model(name, dataset)
        return
    model = _meta_model(name, dataset)
    assert isinstance(model, ZooModel) and isinstance(model[0], Normalize)
    assert model.arch == name and model.dataset == spec.name
    y = model(torch.empty(3, *spec.shape, device="meta"))
    assert y.shape == (3, spec.num_classes)


@pytest.mark.parametrize(("name", "dataset"), sorted(PARAMS))
def test_parameter_counts_match_published(name: str, dataset: str) -> None:
    model = _meta_model(name, dataset)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[(name, dataset)]


def test_parameter_counts_in_millions() -> None:
    """The rounded figures papers quote."""
    def millions(name: str) -> float:
        return round(sum(p.numel() for p in _meta_model(name, "cifar10").parameters()) / 1e6, 2)

    assert millions("preact-resnet18") == 11.17
    assert millions("wrn-34-10") == 46.16
    assert millions("wrn-28-10") == 36.48
    assert round(sum(p.numel() for p in _meta_model("madry-cnn", "mnist").parameters()) / 1e6, 2) == 3.27


@pytest.mark.parametrize(("name", "dataset"), [("smallcnn", "mnist"), ("madry-cnn", "digits"),
                                               ("lenet5", "cifar10"), ("preact-resnet18", "digits")])
def test_real_forward_and_backward(name: str, dataset: str) -> None:
    torch.manual_seed(0)
    spec = get_spec(dataset)
    model = build_model(name, dataset).eval()
    x = torch.rand(2, *spec.shape, requires_grad=True)
    y = model(x)
    assert y.shape == (2, spec.num_classes) and torch.isfinite(y).all()
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # input gradients are non-zero at initialization


@pytest.mark.parametrize(("name", "dataset"), [("smallcnn", "mnist"), ("lenet5", "cifar10"),
                                               ("stl10-cnn", "stl10")])
def test_normalization_lives_inside(name: str, dataset: str) -> None:
    torch.manual_seed(0)
    spec = get_spec(dataset)
    model = build_model(name, dataset).eval()
    x = torch.rand(2, *spec.shape)
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.net((x - mean) / std))


def test_normalize_buffers_follow_the_model() -> None:
    norm = Normalize([0.5, 0.25, 0.0], [0.5, 0.5, 1.0])
    assert set(dict(norm.named_buffers())) == {"mean", "std"}
    assert not list(norm.parameters())
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    out = norm.to(torch.float64)(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out[:, 1], (x[:, 1] - 0.25) / 0.5)
    with pytest.raises(ValueError, match="expects images of shape"):
        norm(torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match="std must be positive"):
        Normalize([0.0], [0.0])


def test_build_model_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet50'.*smallcnn"):
        build_model("resnet50", "mnist")
    with pytest.raises(ValueError, match="unknown dataset"):
        build_model("smallcnn", "imagenet")
    with pytest.raises(TypeError, match="smallcnn.*bad keyword"):
        build_model("smallcnn", "mnist", width=3)


def test_architecture_keywords_and_aliases() -> None:
    model = build_model("SmallCNN", "mnist", drop=0.2, zero_init_last=True)
    assert model.net.classifier.drop.p == 0.2
    assert model.net.classifier.fc3.weight.abs().sum() == 0  # TRADES' zero-initialised last layer, on request
    with torch.device("meta"):
        assert build_model("wrn_34_10", "cifar10", drop_rate=0.3).arch == "wrn-34-10"
    assert build_model("madry-cnn", get_spec("fashion-mnist")).dataset == "fashion-mnist"


def test_smallcnn_layout_is_trades() -> None:
    net = build_model("smallcnn", "mnist").net
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (1, 32, (3, 3)), (32, 32, (3, 3)), (32, 64, (3, 3)), (64, 64, (3, 3))]
    assert [(m.in_features, m.out_features) for m in linears] == [(1024, 200), (200, 200), (200, 10)]
    assert [m.p for m in net.modules() if isinstance(m, nn.Dropout)] == [0.5]


def test_stl10_cnn_layout_is_adv_bnn() -> None:
    net = _meta_model("stl10-cnn", "stl10").net
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 256, 256, 512]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 6
    assert (net.classifier.in_features, net.classifier.out_features) == (512, 10)
