"""Training: one loop, one small recipe per defence."""
