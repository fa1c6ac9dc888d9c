"""ImageData (tensors, subset, seeded validation split) and BatchLoader / Augment on whole batches."""

from __future__ import annotations

import pytest
import torch

from gradguard.data import Augment, BatchLoader, ImageData, get_spec


def _data(n: int = 10, size: int = 6, channels: int = 1) -> ImageData:
    images = torch.arange(n * channels * size * size, dtype=torch.int64).remainder(251).to(torch.uint8)
    images = images.reshape(n, channels, size, size)
    return ImageData(images, torch.arange(n) % 3, get_spec("digits"), "test data")


def test_tensors_are_float_in_unit_range():
    d = _data()
    x, y = d.tensors()
    assert x.dtype == torch.float32 and x.shape == (10, 1, 6, 6) and float(x.max()) <= 1.0 and float(x.min()) >= 0.0
    assert torch.equal((x * 255).round().to(torch.uint8), d.images) and y.dtype == torch.int64


def test_constructor_rejects_wrong_types():
    with pytest.raises(ValueError, match="uint8"):
        ImageData(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long), get_spec("digits"), "")
    with pytest.raises(ValueError, match="labels"):
        ImageData(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.long), get_spec("digits"), "")


def test_validation_split_is_disjoint_complete_and_seeded():
    d = _data(50)
    train, val = d.split(12, seed=3)
    assert len(train) == 38 and len(val) == 12
    ids = lambda part: set(part.images[:, 0, 0, 0].tolist())  # noqa: E731 - first pixel is unique per image here
    assert ids(train).isdisjoint(ids(val)) and ids(train) | ids(val) == ids(d)
    again_train, again_val = d.split(12, seed=3)
    assert torch.equal(again_val.images, val.images)
    assert not torch.equal(d.split(12, seed=4)[1].images, val.images)
    assert val.split_name == "train-val" and val.source == d.source
    with pytest.raises(ValueError):
        d.split(50)


def test_subset_keeps_spec_and_source():
    d = _data()
    s = d.subset([3, 1])
    assert torch.equal(s.labels, d.labels[[3, 1]]) and s.spec is d.spec and len(s) == 2


def test_loader_covers_each_sample_once_per_epoch_and_reshuffles():
    d = _data(10)
    loader = BatchLoader(d, 4, generator=torch.Generator().manual_seed(1))
    assert len(loader) == 3
    epochs = []
    for _ in range(2):
        seen = [x[:, 0, 0, 0] for x, _ in loader]
        assert [len(s) for s in seen] == [4, 4, 2]
        epochs.append(torch.cat(seen))
        assert sorted((epochs[-1] * 255).round().tolist()) == sorted(d.images[:, 0, 0, 0].float().tolist())
    assert not torch.equal(epochs[0], epochs[1])


def test_loader_pairs_images_with_their_labels_and_drop_last():
    d = _data(10)
    for x, y in BatchLoader(d, 3, drop_last=True):
        idx = [int(((d.images[:, 0, 0, 0].float() / 255) - v).abs().argmin()) for v in x[:, 0, 0, 0]]
        assert torch.equal(y, d.labels[idx]) and len(y) == 3
    assert len(BatchLoader(d, 3, drop_last=True)) == 3


def test_loader_without_shuffle_keeps_order_and_is_reproducible():
    d = _data(7)
    x0 = torch.cat([x for x, _ in BatchLoader(d, 3, shuffle=False)])
    assert torch.equal(x0, d.tensors()[0])
    a = [x for x, _ in BatchLoader(d, 3, generator=torch.Generator().manual_seed(5))]
    b = [x for x, _ in BatchLoader(d, 3, generator=torch.Generator().manual_seed(5))]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def test_augment_identity_flip_and_crop_windows():
    d = _data(8, size=5, channels=2)
    x = d.images
    assert torch.equal(Augment(crop_padding=0, flip=False)(x, torch.Generator()), x)
    flipped = Augment(crop_padding=0, flip=True)(x, torch.Generator().manual_seed(0))
    kinds = [torch.equal(f, o) for f, o in zip(flipped, x, strict=True)]
    assert all(k or torch.equal(f, o.flip(2)) for k, f, o in zip(kinds, flipped, x, strict=True))
    assert 0 < sum(kinds) < len(kinds)
    p = 2
    cropped = Augment(crop_padding=p, flip=False)(x, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    offsets = set()
    for i in range(len(x)):
        matches = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                   if torch.equal(cropped[i], padded[i, :, dy:dy + 5, dx:dx + 5])]
        assert matches, f"image {i} is not a window of its padded input"
        offsets.add(matches[0])
    assert len(offsets) > 1  # offsets differ between images of one batch


def test_augment_uses_only_the_given_generator():
    x = _data(16, size=8, channels=3).images
    state = torch.get_rng_state()
    a = Augment()(x, torch.Generator().manual_seed(7))
    b = Augment()(x, torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), state)
    assert a.shape == x.shape and a.dtype == x.dtype


def test_loader_applies_augment_on_batches():
    d = _data(6, size=8, channels=3)
    plain = torch.cat([x for x, _ in BatchLoader(d, 6, shuffle=False)])
    aug = torch.cat([x for x, _ in BatchLoader(d, 6, shuffle=False, augment=Augment(crop_padding=2))])
    assert aug.shape == plain.shape and not torch.equal(aug, plain)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_loader_on_gpu():  # pragma: no cover - CPU machines
    d = _data(6, size=8, channels=3)
    x, y = next(iter(BatchLoader(d, 4, device="cuda", augment=Augment())))
    assert x.is_cuda and y.is_cuda
