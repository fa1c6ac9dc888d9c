"""The options every attack shares are declared once (`AttackOptions`) and reach every attack by their names; the
attacks that wrap another one (Transfer, BPDA) share one save-and-restore of the inner attack's eps."""

from __future__ import annotations

import inspect
import typing

import pytest
import torch
from torch import Tensor, nn

from gradguard.attacks import APGD, APGDT, BPDA, CWL2, FAB, FABT, FGSM, PGD, CWLinf, Square, Transfer
from gradguard.attacks.base import Attack, AttackOptions

NON_DEFAULT: AttackOptions = {
    "eot": 3, "chunk_size": 7, "seed": 11, "generator": torch.Generator().manual_seed(5), "channels_last": False,
}


def test_the_typed_options_are_the_base_class_keywords():
    own = {"eps", "norm"}
    base = [p.name for p in inspect.signature(Attack.__init__).parameters.values() if p.kind is p.KEYWORD_ONLY]
    assert set(typing.get_type_hints(AttackOptions)) == set(base) - own


@pytest.mark.parametrize("make", [
    lambda o: FGSM(eps=0.1, **o), lambda o: PGD(eps=0.1, **o), lambda o: CWLinf(eps=0.1, **o),
    lambda o: APGD(eps=0.1, **o), lambda o: APGDT(eps=0.1, **o), lambda o: CWL2(**o), lambda o: FAB(**o),
    lambda o: FABT(**o), lambda o: Square(eps=0.1, **o),
], ids=["FGSM", "PGD", "CWLinf", "APGD", "APGDT", "CWL2", "FAB", "FABT", "Square"])
def test_every_attack_takes_every_shared_option_by_name(make):
    attack = make(NON_DEFAULT)
    for key, value in NON_DEFAULT.items():
        assert getattr(attack, key) is value or getattr(attack, key) == value, key
    if not isinstance(attack, (APGDT, FABT)):  # these two pick their own targets
        assert make({"targeted": True}).targeted is True
    with pytest.raises(TypeError, match="eott"):
        make({"eott": 2})


class Fails(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        raise RuntimeError("surrogate broke")


def test_a_wrapped_attack_gets_its_eps_back_also_on_error():
    inner = PGD(eps=0.2, steps=2)
    transfer = Transfer(attack=inner, surrogate=Fails())
    transfer.eps = 0.05  # what a sweep does
    with pytest.raises(RuntimeError, match="surrogate broke"):
        transfer(nn.Identity(), torch.rand(2, 4), torch.zeros(2, dtype=torch.long))
    assert inner.eps == 0.2
    bpda = BPDA(attack=inner, preprocess=lambda z: z)
    bpda.eps = 0.05
    with pytest.raises(RuntimeError, match="surrogate broke"):
        bpda(Fails(), torch.rand(2, 4), torch.zeros(2, dtype=torch.long))
    assert inner.eps == 0.2
    assert repr(bpda).startswith("BPDA(attack=PGD(eps=0.2") and repr(transfer).startswith("Transfer(attack=PGD(")
