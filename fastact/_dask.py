"""Dask arrays: the out-of-place functions applied lazily, block by block, with the same
kernels (SPEC §3).

Elementwise forms go through ``dask.array.map_blocks``, which aligns the chunks of
``grad`` and ``x``/``y`` and broadcasts them like NumPy; softmax and log_softmax (and their
backward passes) first rechunk their axis into one block, so each block holds whole rows.
The function called on each block is the public fastact function itself, pickled by
reference (``fastact.sigmoid``), so a ``distributed`` worker imports fastact and compiles
(or loads from the disk cache) the kernel it needs. ``out=`` has no meaning for a lazy
array and is a ``TypeError``, as are the in-place forms (raised before this module).

dask is imported only when a dask array reaches fastact.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from . import _dispatch as D

_OUT_MSG = "out= is not supported for dask arrays; use the returned dask array"


def _block(fn, y_kw: bool, kwargs: dict, *blocks):
    """One block: ``fn`` on NumPy blocks, ``fn(x)``, ``fn(grad, x)``, or with ``y_kw``
    ``fn(grad, y=y)`` (an elementwise backward from the output)."""
    res = fn(blocks[0], y=blocks[1], **kwargs) if y_kw else fn(*blocks, **kwargs)
    return np.asarray(res)  # a 0-d block gives a NumPy scalar; dask wants an array


def _as_dask(a):
    import dask.array as da

    return a if D.is_dask_array(a) else da.asarray(a)


def _dtype(arrays, names) -> np.dtype:
    dt = None
    for a, what in zip(arrays, names):
        c = D.compute_dtype(np.dtype(a.dtype), what)
        dt = c if dt is None else np.promote_types(dt, c)
    return dt


def _known(shape) -> bool:
    return all(not (isinstance(s, float) and math.isnan(s)) for s in shape)


def apply(fn, args: tuple, kwargs: dict):
    """``fn(*args, **kwargs)`` for an elementwise public function ``fn`` when an argument is
    a dask array: a lazy dask array of the result.

    ``args`` is ``(x,)`` (forward, grad) or ``(grad, x)`` (backward, ``x`` None when ``y``
    is in ``kwargs``); ``kwargs`` holds ``out``, ``target``, the activation's parameters and,
    for backward, ``y``. The parameters were validated by the caller."""

    kwargs = dict(kwargs)
    if kwargs.pop("out", None) is not None:
        raise TypeError(f"{fn.__name__}: {_OUT_MSG}")
    if len(args) == 1:
        arrays, names, y_kw = [_as_dask(args[0])], ["x"], False
    else:
        grad, x = args
        y = kwargs.pop("y", None)
        v, what = (x, "x") if y is None else (y, "y")
        arrays, names = [_as_dask(grad), _as_dask(v)], ["grad", what]
        y_kw = y is not None
        shapes = [a.shape for a in arrays]
        if all(_known(s) for s in shapes):
            try:
                np.broadcast_shapes(*shapes)
            except ValueError:
                raise ValueError(
                    f"{fn.__name__}: grad of shape {shapes[0]} and {what} of shape "
                    f"{shapes[1]} do not broadcast"
                ) from None
    dt = _dtype(arrays, names)
    return _blockwise(functools.partial(_block, fn, y_kw, kwargs), arrays, dt, fn.__name__)


def _blockwise(func, arrays: list, dt: np.dtype, token: str):
    """``func`` on the blocks of ``arrays``, aligned axis by axis from the right and
    broadcast like NumPy (``blockwise`` rechunks them to common chunks; ``map_blocks``
    pairs blocks by position only)."""
    import dask.array as da

    ndim = max(a.ndim for a in arrays)
    pairs = []
    for a in arrays:
        pairs += [a, tuple(range(ndim - a.ndim, ndim))]
    return da.blockwise(
        func,
        tuple(range(ndim)),
        *pairs,
        dtype=dt,
        meta=np.empty((0,) * ndim, dt),
        token=token,
    )


def along_axis(fn, arrays: list, axis: int, kwargs: dict, out=None):
    """``fn`` (softmax, log_softmax or their backward passes) on dask arrays: ``axis``
    rechunked into one block, then ``fn`` block by block with ``axis=axis``.

    ``arrays`` is ``[x]`` or ``[grad, y]`` (same shape). ``axis`` is already checked and
    non-negative."""

    if out is not None:
        raise TypeError(f"{fn.__name__}: {_OUT_MSG}")
    arrays = [_as_dask(a) for a in arrays]
    names = ["x"] if len(arrays) == 1 else ["grad", "y"]
    if len(arrays) == 2 and arrays[0].shape != arrays[1].shape and _known(arrays[0].shape):
        raise ValueError(
            f"{fn.__name__}: grad has shape {arrays[0].shape} and y has shape {arrays[1].shape}"
        )
    dt = _dtype(arrays, names)
    arrays = [a.rechunk({axis: -1}) for a in arrays]
    func = functools.partial(_block, fn, False, dict(kwargs, axis=axis))
    return _blockwise(func, arrays, dt, fn.__name__)
