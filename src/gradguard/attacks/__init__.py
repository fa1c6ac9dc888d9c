"""Attacks: one module per family; an attack is called as ``attack(model, x, y) -> x_adv``.

Every attack leaves the model's train/eval mode and parameter ``requires_grad`` flags as it found them, draws its
randomness from its own generator (``seed`` or ``generator``), averages gradients over ``eot`` draws in one
batched pass, and records ``last_grad_evals`` / ``last_forward_evals`` / ``last_wall_s`` after each call.
"""

from gradguard.attacks.apgd import APGD, APGDT
from gradguard.attacks.base import Attack, AttackOptions, eval_mode
from gradguard.attacks.bpda import BPDA
from gradguard.attacks.cw import CWL2
from gradguard.attacks.fab import FAB, FABT
from gradguard.attacks.fgsm import FGSM
from gradguard.attacks.pgd import PGD, CWLinf
from gradguard.attacks.square import Square
from gradguard.attacks.transfer import Transfer

__all__ = [
    "Attack", "AttackOptions", "eval_mode", "FGSM", "PGD", "CWLinf", "CWL2", "APGD", "APGDT", "FAB", "FABT", "Square",
    "Transfer", "BPDA",
]
