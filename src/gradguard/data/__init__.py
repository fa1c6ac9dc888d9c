"""Datasets: formats, sources, verification, caching and fast in-memory batching.

``load(name, split)`` returns an :class:`ImageData` (uint8 tensors in memory); :class:`BatchLoader` slices batches
from it, with whole-batch :class:`Augment`. Every bad input raises :class:`DatasetError` naming the file.
"""

from gradguard.data.api import SPLITS, available, fetch, info, is_cached, load
from gradguard.data.cache import cache_root
from gradguard.data.dataset import ImageData
from gradguard.data.errors import ChecksumError, DatasetError, DatasetNotFoundError
from gradguard.data.loader import Augment, BatchLoader
from gradguard.data.specs import SPECS, DatasetSpec, get_spec

__all__ = [
    "load", "fetch", "info", "available", "is_cached", "SPLITS", "cache_root",
    "ImageData", "BatchLoader", "Augment",
    "DatasetError", "DatasetNotFoundError", "ChecksumError",
    "DatasetSpec", "SPECS", "get_spec",
]
