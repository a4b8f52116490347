"""softmax, log_softmax, their in-place forms and backward passes (from the output).

Rows along the last axis (or any axis whose stride is the smallest) run through
``_nekernels.softmax_rows``: per row a vectorized max, e^(x - m) written to the output and
summed, then one scaling pass, all on a row that stays in cache, rows spread over threads.
Other axes run through the column kernels in cache-sized blocks of columns.
"""

from __future__ import annotations

import numpy as np

from . import _dispatch as D
from . import _nekernels as K
from . import _nelayout as L


# ------------------------------------------------------------------ softmax
def _softmax_run(x: np.ndarray, axis: int, out: np.ndarray, log: bool, target: str) -> None:
    if x.size == 0:
        return
    (x,) = D._detach([x], out)
    par = L.parallel(target, x.size, "transcendental")
    arrs = [x, out]
    lead, P, Q, rows = L.split(L.merged_others(arrs, axis), x.strides[axis], 2)
    n = x.shape[axis]
    ax = [(n, a.strides[axis]) for a in arrs]
    if rows:
        kern = K.softmax_rows(log, par)
        xv = L.view(x, 0, lead, [(P[0], P[1][0]), ax[0]])
        ov = L.view(out, 1, lead, [(P[0], P[1][1]), ax[1]])
        rb = max(1, -(-P[0] // 64)) if par else P[0]
        for idx in L.lead_indices(lead):
            kern(xv[idx], ov[idx], rb)
        return
    kern = K.softmax_cols(log, par)
    xv = L.view(x, 0, lead, [(P[0], P[1][0]), ax[0], (Q[0], Q[1][0])])
    ov = L.view(out, 1, lead, [(P[0], P[1][1]), ax[1], (Q[0], Q[1][1])])
    bw = _block_width(n, Q[0], P[0], x.itemsize, par)
    for idx in L.lead_indices(lead):
        kern(xv[idx], ov[idx], bw)


def _block_width(n: int, q: int, p: int, itemsize: int, par: bool) -> int:
    """Columns per task for the column kernels: a block of n x bw elements fits in L2;
    at least 16 (a cache line of float32), fewer blocks than 2 per thread only if tiny."""
    bw = max(16, (L.CACHE_BYTES // max(1, n * itemsize)) // 16 * 16)
    if par:
        while bw > 16 and p * -(-q // bw) < 4 * L.threads():
            bw //= 2
    return min(bw, q)


_SM_DOC = """{name}(x, axis=-1, out=None, *, target="auto", stream=None)

    {what} along ``axis``, numerically stable (the row maximum m is subtracted):

        {formula}

    A row holding NaN or +inf, and a row of only -inf, gives NaN throughout (as PyTorch,
    SciPy and JAX); -inf beside finite entries gives {ninf}.

    Parameters
    ----------
    x : array_like
        Input; integers, bools and lists are computed in float64, float16 in float32.
    axis : int
        The axis of the rows (default: the last). A 0-d input has none: ``ValueError``.
    out : ndarray, optional
        Where to write the result (``out=x`` works in place, as does ``{name}_(x)``).
    target : {{"auto", "cpu", "parallel", "cuda"}}
        "auto" runs CUDA arrays on the GPU, large arrays' rows on all cores.
        "cpu" and "parallel" give bitwise identical results.
    stream : numba CUDA stream, optional
        For the CUDA target.

    Returns
    -------
    ndarray of the input's float dtype.

    See Also
    --------
    scipy.special.{name} (note its default ``axis=None``), torch.nn.functional.{name},
    fastact.{name}_backward
"""


def _make_softmax(log: bool):
    name = "log_softmax" if log else "softmax"

    def forward(
        x, axis: int = -1, out: np.ndarray | None = None, *, target: str = "auto", stream=None
    ) -> np.ndarray:
        D.check_target(target)
        if L.on_gpu(target, x, out):
            return L.gpu(name, x, axis=axis, out=out, stream=stream)
        if D.is_dask_array(x):
            return _dask_along_axis(forward, [x], axis, out, target)
        a = D.as_input(x)
        ax = L.check_axis(axis, a.ndim, name)
        res = L.result_array(a.shape, a.dtype, out, like=a)
        work = L.work(res, a.dtype)
        _softmax_run(a, ax, work, log, target)
        L.finish(work, res)
        return D.wrap_result(res, out, x) if res.ndim else res

    def inplace(x: np.ndarray, axis: int = -1, *, target: str = "auto", stream=None) -> np.ndarray:
        D.check_target(target)
        if L.on_gpu(target, x):
            return L.gpu(name + "_", x, axis=axis, stream=stream)
        L.no_dask_inplace(x, name + "_", f"{name}(x)")
        a = D.check_inplace(x)
        ax = L.check_axis(axis, a.ndim, name + "_")
        _softmax_run(a, ax, a, log, target)
        return x

    formula = (
        "log_softmax(x)_i = x_i - m - log(sum_j exp(x_j - m))"
        if log
        else "softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m)"
    )
    forward.__doc__ = _SM_DOC.format(
        name=name,
        what="Log-softmax" if log else "Softmax",
        formula=formula,
        ninf="-inf" if log else "0",
    )
    inplace.__doc__ = (
        f"{name}_(x, axis=-1, *, target='auto'): {name} in place; returns x.\n\n"
        f"    x : ndarray of float32 or float64, written through (views included).\n"
        f"    Nothing the size of x is allocated. See fastact.{name}.\n"
    )
    forward.__name__ = forward.__qualname__ = name
    inplace.__name__ = inplace.__qualname__ = name + "_"
    return forward, inplace


def _dask_along_axis(fn, arrays, axis, out, target: str):
    """Dask input: ``axis`` rechunked into one block, then ``fn`` block by block."""
    from . import _dask

    ax = L.check_axis(axis, max(np.ndim(a) for a in arrays), fn.__name__)
    return _dask.along_axis(fn, arrays, ax, {"target": target}, out=out)


softmax, softmax_ = _make_softmax(False)
log_softmax, log_softmax_ = _make_softmax(True)


# ------------------------------------------------------------------ softmax backward
def _bwd_inputs(grad, y, out, fname: str):
    g, a = D.as_input(grad, "grad"), D.as_input(y, "y")
    dt = np.promote_types(g.dtype, a.dtype)
    g, a = g.astype(dt, copy=False), a.astype(dt, copy=False)
    if g.shape != a.shape:
        raise ValueError(f"{fname}: grad has shape {g.shape} and y has shape {a.shape}")
    return g, a, dt


def _softmax_bwd_run(g, y, axis: int, out: np.ndarray, log: bool, target: str) -> None:
    if y.size == 0:
        return
    g, y = D._detach([g, y], out)
    par = L.parallel(target, y.size, "transcendental" if log else "linear")
    arrs = [y, g, out]
    lead, P, Q, rows = L.split(L.merged_others(arrs, axis), y.strides[axis], 3)
    n = y.shape[axis]
    ax = [(n, a.strides[axis]) for a in arrs]
    if rows:
        kern = K.softmax_bwd_rows(log, par)
        vs = [L.view(a, i, lead, [(P[0], P[1][i]), ax[i]]) for i, a in enumerate(arrs)]
        rb = max(1, -(-P[0] // 64)) if par else P[0]
        for idx in L.lead_indices(lead):
            kern(vs[1][idx], vs[0][idx], vs[2][idx], rb)
        return
    kern = K.softmax_bwd_cols(log, par)
    vs = [L.view(a, i, lead, [(P[0], P[1][i]), ax[i], (Q[0], Q[1][i])]) for i, a in enumerate(arrs)]
    bw = _block_width(n, Q[0], P[0], y.itemsize, par)
    for idx in L.lead_indices(lead):
        kern(vs[1][idx], vs[0][idx], vs[2][idx], bw)


def _make_softmax_backward(log: bool):
    name = ("log_softmax" if log else "softmax") + "_backward"

    def backward(
        grad, y, axis: int = -1, out: np.ndarray | None = None, *, target: str = "auto", stream=None
    ) -> np.ndarray:
        D.check_target(target)
        if L.on_gpu(target, grad, y, out):
            return L.gpu(name, grad, y, axis=axis, out=out, stream=stream)
        if D.is_dask_array(grad) or D.is_dask_array(y):
            return _dask_along_axis(backward, [grad, y], axis, out, target)
        g, a, dt = _bwd_inputs(grad, y, out, name)
        ax = L.check_axis(axis, a.ndim, name)
        res = L.result_array(a.shape, dt, out, like=a)
        work = L.work(res, dt)
        _softmax_bwd_run(g, a, ax, work, log, target)
        L.finish(work, res)
        return D.wrap_result(res, out, grad) if res.ndim else res

    formula = "dx_i = g_i - exp(y_i) * sum_j g_j" if log else "dx_i = y_i * (g_i - sum_j g_j y_j)"
    fwd = "log_softmax" if log else "softmax"
    backward.__doc__ = f"""{name}(grad, y, axis=-1, out=None, *, target="auto", stream=None)

    The backward pass of ``{fwd}`` along ``axis``, from its output ``y`` (so the forward
    may run in place):

        {formula}

    Parameters
    ----------
    grad : array_like
        Gradient of the loss with respect to y.
    y : array_like
        ``{fwd}(x, axis)``, the same shape as grad.
    axis : int
        The axis of the forward pass.
    out : ndarray, optional
        Where to write dx; ``out=grad`` works in place.
    target : {{"auto", "cpu", "parallel", "cuda"}}
    stream : numba CUDA stream, optional

    Returns
    -------
    ndarray: the gradient with respect to x.

    See Also
    --------
    torch's _{fwd}_backward_data, fastact.{fwd}
"""
    backward.__name__ = backward.__qualname__ = name
    return backward


softmax_backward = _make_softmax_backward(False)
log_softmax_backward = _make_softmax_backward(True)
