"""Attacks: one module per family; an attack is called as ``attack(model, x, y) -> x_adv``."""

from gradguard.attacks.apgd import APGD, APGDT
from gradguard.attacks.base import Attack, eval_mode
from gradguard.attacks.fgsm import FGSM
from gradguard.attacks.pgd import PGD, CWLinf

__all__ = ["Attack", "eval_mode", "FGSM", "PGD", "CWLinf", "APGD", "APGDT"]
