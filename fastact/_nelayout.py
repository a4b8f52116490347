"""Shared checks and canonical strided views of the non-elementwise activations.

The dimensions other than the reduction (or channel) axis are sorted by stride and merged
where every array involved allows it, giving a canonical view — ``(R, n)`` rows,
``(P, n, Q)`` columns, ``(P, G, k, Q)`` maxout groups — without a copy; dimensions that
cannot be merged become a short Python loop (``lead``). In place therefore writes through
any view and allocates nothing the size of the input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import _dispatch as D

CACHE_BYTES = 256 * 1024  # a column block of softmax along a non-last axis stays in L2


# ------------------------------------------------------------------ common checks
def check_axis(axis: Any, ndim: int, fname: str) -> int:
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise ValueError(f"{fname}: axis must be an integer, got {axis!r}")
    if ndim == 0:
        raise ValueError(f"{fname}: a 0-d array has no axis {axis}; pass a 1-d array or more")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{fname}: axis {axis} is out of bounds for an array of {ndim} dims")
    return int(axis) % ndim


def gpu(name: str, *args, **kwargs):
    """Hand a CUDA call to ``_cuda.nonelementwise(name, *args, **kwargs)``; the arguments are
    those of the public function (``stream`` included)."""
    from . import _cuda

    fn = getattr(_cuda, "nonelementwise", None)
    if fn is None:
        if not _cuda.available():
            raise RuntimeError(
                "target='cuda' needs numba-cuda and a usable NVIDIA GPU; none was found "
                "(pip install 'fastact[cuda]' on a machine with a GPU)"
            )
        raise RuntimeError(f"target='cuda': {name} has no CUDA kernel yet")
    return fn(name, *args, **kwargs)


def on_gpu(target: str, *arrays) -> bool:
    return target == "cuda" or any(D.is_cuda_array(a) for a in arrays if a is not None)


def no_dask_inplace(x, fname: str, instead: str) -> None:
    if D.is_dask_array(x):
        raise TypeError(f"{fname} cannot work in place on a dask array; use {instead} instead")


def result_array(shape: tuple, dt: np.dtype, out, like=None) -> np.ndarray:
    if out is None:
        if like is not None and like.shape == shape:
            return np.empty_like(like, dtype=dt)
        return np.empty(shape, dt)
    return D.check_out(out, shape, dt)


def scalar_or(res: np.ndarray, out):
    return res[()] if (out is None and res.ndim == 0) else res


def work(res: np.ndarray, dt: np.dtype) -> np.ndarray:
    """Where kernels write: ``res`` itself, or a scratch of the compute dtype when ``out``
    has another dtype (copied back with NumPy's casting afterwards)."""
    return res if res.dtype == dt else np.empty(res.shape, dt)


def finish(work: np.ndarray, res: np.ndarray) -> None:
    if work is not res:
        np.copyto(res, work, casting="same_kind")


# ------------------------------------------------------------------ canonical views
def merged_others(arrays: list[np.ndarray], axis: int | None) -> list[tuple[int, list[int]]]:
    """The dimensions other than ``axis`` (size > 1), sorted by the first array's stride
    (largest first) and merged where every array allows it: [(size, [stride per array])]."""
    a0 = arrays[0]
    dims = [d for d in range(a0.ndim) if d != axis and a0.shape[d] != 1]
    dims.sort(key=lambda d: -abs(a0.strides[d]))
    merged: list[tuple[int, list[int]]] = []
    for d in dims:
        size, st = a0.shape[d], [a.strides[d] for a in arrays]
        if merged and all(ps == size * s for ps, s in zip(merged[-1][1], st, strict=True)):
            merged[-1] = (merged[-1][0] * size, st)
        else:
            merged.append((size, st))
    return merged


def split(others, axis_stride: int, narr: int):
    """(lead, P, Q, rows): rows=True when the axis has the smallest stride (then Q is unit
    and P the innermost other dimension), else Q is the innermost other dimension."""
    unit = (1, [0] * narr)
    if not others:
        return [], unit, unit, True
    if abs(axis_stride) <= abs(others[-1][1][0]):
        return others[:-1], others[-1], unit, True
    if len(others) == 1:
        return [], unit, others[0], False
    return others[:-2], others[-2], others[-1], False


def view(a: np.ndarray, i: int, lead, dims) -> np.ndarray:
    """View of array number ``i`` as (*lead, *dims); dims are (size, stride) of this array."""
    shape = tuple(s for s, _ in lead) + tuple(s for s, _ in dims)
    strides = tuple(st[i] for _, st in lead) + tuple(st for _, st in dims)
    return as_strided(a, shape, strides)


def lead_indices(lead):
    return np.ndindex(*[s for s, _ in lead]) if lead else [()]


def parallel(target: str, n: int, family: str) -> bool:
    return D.choose_cpu_target(target, n, family)


def threads() -> int:
    import numba

    return numba.get_num_threads()
