"""Dask arrays: the out-of-place functions applied block by block (to be completed)."""

from __future__ import annotations


def apply(fn, args: tuple, kwargs: dict):
    """``fn(*args, **kwargs)`` on dask arrays, lazily, block by block."""
    raise NotImplementedError("dask arrays are not supported yet")
