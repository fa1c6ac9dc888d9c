"""Model zoo, normalization, randomized layers and the SGN wrapper."""
