"""Model zoo, normalization, randomized layers and the SGN wrapper."""

from gradguard.models._common import SizeError
from gradguard.models.bayesian import BayesLayer, kl_divergence
from gradguard.models.normalization import Normalize
from gradguard.models.randomized import KINDS, freeze, is_randomized, random_layers, randomize, set_generator
from gradguard.models.sgn import SelfGradientNetwork
from gradguard.models.zoo import ZooModel, build_model, list_models

__all__ = [
    "build_model", "list_models", "Normalize", "ZooModel",
    "randomize", "is_randomized", "freeze", "set_generator", "kl_divergence", "random_layers", "KINDS",
    "BayesLayer", "SizeError", "SelfGradientNetwork",
]
