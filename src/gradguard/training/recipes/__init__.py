"""Recipes: one small module per defence."""
