"""Attacks: one module per family; an attack is called as attack(model, x, y) -> x_adv."""
