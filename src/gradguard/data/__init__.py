"""Datasets: formats, sources, verification, caching and fast in-memory batching."""
