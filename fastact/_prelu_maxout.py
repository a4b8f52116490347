"""PReLU (per-channel leaky ReLU) and maxout, with their derivatives and backward passes."""

from __future__ import annotations

import numpy as np

from . import _dispatch as D
from . import _nekernels as K
from . import _nelayout as L

QBLOCK = 16384  # PReLU: elements of the inner dimension per task (fixed: it orders sums)
PCHUNKS = 64  # PReLU backward: at most this many partial sums per channel along P
_INF = float("inf")


# ------------------------------------------------------------------ PReLU
def _weight(weight, shape: tuple, dt: np.dtype, fname: str):
    """(weight as a contiguous 1-D array of dt, per_channel, weight's shape)."""
    w = D.as_input(weight, "weight")
    nch = shape[1] if len(shape) >= 2 else 1
    if w.size == 1:
        return np.ascontiguousarray(w.reshape(1), dt), False, w.shape
    if w.ndim != 1 or w.size != nch:
        raise ValueError(
            f"{fname}: weight has shape {w.shape}; it needs 1 element or one per channel "
            f"({nch}, the size of x's axis 1)"
            + ("" if len(shape) >= 2 else f"; x has {len(shape)} dims, so no channel axis")
        )
    return np.ascontiguousarray(w, dt), True, w.shape


def _plan(arrs: list[np.ndarray], per_channel: bool):
    """Canonical PReLU views: (lead, P, C, Q, channels_innermost) for ``arrs``."""
    x = arrs[0]
    axis = 1 if per_channel else None
    others = L.merged_others(arrs, axis)
    C = x.shape[1] if per_channel else 1
    ch = [(C, a.strides[1] if per_channel else 0) for a in arrs]
    lead, P, Q, inner = L.split(others, x.strides[1] if per_channel else _INF, len(arrs))
    if inner:
        views = [L.view(a, i, lead, [(P[0], P[1][i]), ch[i]]) for i, a in enumerate(arrs)]
    else:
        views = [
            L.view(a, i, lead, [(P[0], P[1][i]), ch[i], (Q[0], Q[1][i])])
            for i, a in enumerate(arrs)
        ]
    return lead, P[0], Q[0], inner, views


def _prelu_map(
    x: np.ndarray, w: np.ndarray, per_channel: bool, out: np.ndarray, grad: bool, target: str
) -> None:
    if x.size == 0:
        return
    (x,) = D._detach([x], out)
    par = L.parallel(target, x.size, "linear")
    lead, _, _, inner, (xv, ov) = _plan([x, out], per_channel)
    kern = K.prelu_map(grad, not inner, par)
    for idx in L.lead_indices(lead):
        kern(xv[idx], w, ov[idx], QBLOCK)


def _prelu_bwd(g, x, w, per_channel: bool, out: np.ndarray, target: str) -> np.ndarray:
    """g·prelu'(x) into out; returns the weight gradient per channel (length C)."""
    C = w.size
    if x.size == 0:
        return np.zeros(C, x.dtype)
    g, x = D._detach([g, x], out)
    par = L.parallel(target, x.size, "linear")
    lead, P, Q, inner, (xv, gv, ov) = _plan([x, g, out], per_channel)
    kern = K.prelu_bwd(not inner, par)
    pb = -(-P // min(P, PCHUNKS))
    nk = -(-P // pb)
    nq = 1 if inner else -(-Q // QBLOCK)
    nlead = int(np.prod([s for s, _ in lead])) if lead else 1
    partial = np.zeros((nlead, nk * nq, C), x.dtype)
    for li, idx in enumerate(L.lead_indices(lead)):
        kern(gv[idx], xv[idx], w, ov[idx], partial[li], pb, QBLOCK)
    return partial.reshape(-1, C).sum(axis=0)


_PRELU_DOC = """{sig}

    PReLU, leaky ReLU with a learned slope per channel (PyTorch's ``prelu``):

        prelu(x) = x if x > 0 else weight[c] * x,   c = the index along axis 1
{extra}
    ``weight`` has one element, or one per channel (``x.shape[1]``; channels on axis 1 as
    in PyTorch, any number of dimensions). Values match ``leaky_relu(x, negative_slope=w)``
    exactly: prelu'(0) = weight (as PyTorch), NaN in gives NaN out, and a zero weight gives
    +0 for x <= 0.

    Parameters
    ----------
    {params}
    target : {{"auto", "cpu", "parallel", "cuda"}}
        "cpu" and "parallel" give bitwise identical results.
    stream : numba CUDA stream, optional

    Returns
    -------
    {returns}

    See Also
    --------
    torch.nn.functional.prelu, fastact.leaky_relu
"""


def prelu(x, weight, out: np.ndarray | None = None, *, target: str = "auto", stream=None):
    D.check_target(target)
    if L.on_gpu(target, x, weight, out):
        return L.gpu("prelu", x, weight, out=out, stream=stream)
    a = D.as_input(x)
    w, pc, _ = _weight(weight, a.shape, a.dtype, "prelu")
    res = L.result_array(a.shape, a.dtype, out, like=a)
    work = L.work(res, a.dtype)
    _prelu_map(a, w, pc, work, False, target)
    L.finish(work, res)
    return L.scalar_or(res, out)


def prelu_(x: np.ndarray, weight, *, target: str = "auto", stream=None) -> np.ndarray:
    D.check_target(target)
    if L.on_gpu(target, x, weight):
        return L.gpu("prelu_", x, weight, stream=stream)
    L.no_dask_inplace(x, "prelu_", "prelu(x, weight)")
    a = D.check_inplace(x)
    w, pc, _ = _weight(weight, a.shape, a.dtype, "prelu_")
    _prelu_map(a, w, pc, a, False, target)
    return x


def prelu_grad(x, weight, out: np.ndarray | None = None, *, target: str = "auto", stream=None):
    D.check_target(target)
    if L.on_gpu(target, x, weight, out):
        return L.gpu("prelu_grad", x, weight, out=out, stream=stream)
    a = D.as_input(x)
    w, pc, _ = _weight(weight, a.shape, a.dtype, "prelu_grad")
    res = L.result_array(a.shape, a.dtype, out, like=a)
    work = L.work(res, a.dtype)
    _prelu_map(a, w, pc, work, True, target)
    L.finish(work, res)
    return L.scalar_or(res, out)


def prelu_backward(
    grad, x, weight, *, out: np.ndarray | None = None, target: str = "auto", stream=None
) -> tuple[np.ndarray, np.ndarray]:
    D.check_target(target)
    if L.on_gpu(target, grad, x, weight, out):
        return L.gpu("prelu_backward", grad, x, weight, out=out, stream=stream)
    g, a = D.as_input(grad, "grad"), D.as_input(x)
    dt = np.promote_types(g.dtype, a.dtype)
    g, a = g.astype(dt, copy=False), a.astype(dt, copy=False)
    if g.shape != a.shape:
        raise ValueError(f"prelu_backward: grad has shape {g.shape} and x has shape {a.shape}")
    w, pc, wshape = _weight(weight, a.shape, dt, "prelu_backward")
    res = L.result_array(a.shape, dt, out, like=a)
    work = L.work(res, dt)
    gw = _prelu_bwd(g, a, w, pc, work, target)
    L.finish(work, res)
    gw = gw.reshape(wshape) if pc else gw.sum().reshape(wshape)
    return res, gw


prelu.__doc__ = _PRELU_DOC.format(
    sig='prelu(x, weight, out=None, *, target="auto", stream=None)',
    extra="",
    params="x : array_like\n    weight : array_like\n    out : ndarray, optional\n"
    "        Where to write the result (``out=x`` works in place).",
    returns="ndarray (a NumPy scalar for a 0-d x without out)",
)
prelu_.__doc__ = _PRELU_DOC.format(
    sig='prelu_(x, weight, *, target="auto", stream=None)',
    extra="\n    x is overwritten (views are written through) and returned.\n",
    params="x : ndarray of float32 or float64\n    weight : array_like",
    returns="ndarray: x",
)
prelu_grad.__doc__ = _PRELU_DOC.format(
    sig='prelu_grad(x, weight, out=None, *, target="auto", stream=None)',
    extra="\n    prelu_grad gives d prelu / dx = 1 if x > 0 else weight[c].\n",
    params="x : array_like\n    weight : array_like\n    out : ndarray, optional",
    returns="ndarray: d prelu(x) / dx",
)
prelu_backward.__doc__ = _PRELU_DOC.format(
    sig='prelu_backward(grad, x, weight, *, out=None, target="auto", stream=None)',
    extra="\n    prelu_backward gives, in one pass over grad and x,\n\n"
    "        grad_x = grad * (1 if x > 0 else weight[c])\n"
    "        grad_weight[c] = sum over every axis but 1 of (0 if x > 0 else x * grad)\n",
    params="grad : array_like\n        Gradient of the loss with respect to prelu(x); x's shape.\n"
    "    x : array_like\n    weight : array_like\n    out : ndarray, optional\n"
    "        Where to write grad_x (``out=grad`` works in place).",
    returns="(grad_x, grad_weight): grad_weight shaped like weight, in x's dtype.",
)


# ------------------------------------------------------------------ maxout
def _pieces(pieces, n: int, fname: str) -> int:
    if isinstance(pieces, (bool, np.bool_)) or not isinstance(pieces, (int, np.integer)):
        raise ValueError(f"{fname}: pieces must be a positive integer, got {pieces!r}")
    if pieces < 1:
        raise ValueError(f"{fname}: pieces must be a positive integer, got {pieces}")
    if n % pieces:
        raise ValueError(f"{fname}: the axis has {n} entries, not divisible by pieces={pieces}")
    return int(pieces)


def _maxout_views(xs: list[np.ndarray], rs: list[np.ndarray], axis: int, k: int):
    """Joint canonical views: the x-shaped arrays ``xs`` as (lead, P, G, k, Q), the
    result-shaped ``rs`` as (lead, P, G, Q); the layout follows xs[0]."""
    arrs = [*xs, *rs]
    x = xs[0]
    lead, P, Q, _ = L.split(L.merged_others(arrs, axis), x.strides[axis], len(arrs))
    G = x.shape[axis] // k
    views = []
    for i, a in enumerate(arrs):
        s = a.strides[axis]
        mid = [(G, s * k), (k, s)] if i < len(xs) else [(G, s)]
        views.append(L.view(a, i, lead, [(P[0], P[1][i]), *mid, (Q[0], Q[1][i])]))
    return lead, views


def maxout(
    x,
    pieces: int,
    axis: int = -1,
    out: np.ndarray | None = None,
    *,
    target: str = "auto",
    stream=None,
) -> np.ndarray:
    """maxout(x, pieces, axis=-1, out=None, *, target="auto", stream=None)

    Maxout (Goodfellow et al. 2013): the max over consecutive groups of ``pieces`` entries
    along ``axis``:

        out[..., i, ...] = max_{j < pieces} x[..., i * pieces + j, ...]

    NaN wins, as in ``np.max``.

    Parameters
    ----------
    x : array_like
    pieces : int
        Group size; ``x.shape[axis]`` must be divisible by it (``ValueError`` otherwise).
    axis : int
        Any axis; any strides.
    out : ndarray, optional
        Shaped like x with ``axis`` divided by pieces.
    target : {"auto", "cpu", "parallel", "cuda"}
    stream : numba CUDA stream, optional

    Returns
    -------
    ndarray

    See Also
    --------
    fastact.maxout_backward
    """
    D.check_target(target)
    if L.on_gpu(target, x, out):
        return L.gpu("maxout", x, pieces, axis=axis, out=out, stream=stream)
    a = D.as_input(x)
    ax = L.check_axis(axis, a.ndim, "maxout")
    k = _pieces(pieces, a.shape[ax], "maxout")
    oshape = a.shape[:ax] + (a.shape[ax] // k,) + a.shape[ax + 1 :]
    res = L.result_array(oshape, a.dtype, out)
    work = L.work(res, a.dtype)
    if work.size:
        (a,) = D._detach([a], work)
        lead, (xv, ov) = _maxout_views([a], [work], ax, k)
        kern = K.maxout_fwd(L.parallel(target, a.size, "linear"))
        for idx in L.lead_indices(lead):
            kern(xv[idx], ov[idx])
    L.finish(work, res)
    return res


def maxout_backward(
    grad,
    x,
    pieces: int,
    axis: int = -1,
    out: np.ndarray | None = None,
    *,
    target: str = "auto",
    stream=None,
) -> np.ndarray:
    """maxout_backward(grad, x, pieces, axis=-1, out=None, *, target="auto", stream=None)

    The backward pass of ``maxout``: each entry of ``grad`` goes to the first arg-max of
    its group in ``x`` (``np.argmax``: the first NaN if the group holds one), 0 elsewhere:

        dx[..., i * pieces + j, ...] = grad[..., i, ...] if j == argmax_j x[..., i*pieces + j, ...]
                                       else 0

    Parameters
    ----------
    grad : array_like
        Shaped like ``maxout(x, pieces, axis)``.
    x : array_like
        The input of the forward pass.
    pieces, axis : as for maxout.
    out : ndarray, optional
        Shaped like x (``out=x`` works in place).
    target : {"auto", "cpu", "parallel", "cuda"}
    stream : numba CUDA stream, optional

    Returns
    -------
    ndarray shaped like x.
    """
    D.check_target(target)
    if L.on_gpu(target, grad, x, out):
        return L.gpu("maxout_backward", grad, x, pieces, axis=axis, out=out, stream=stream)
    g, a = D.as_input(grad, "grad"), D.as_input(x)
    dt = np.promote_types(g.dtype, a.dtype)
    g, a = g.astype(dt, copy=False), a.astype(dt, copy=False)
    ax = L.check_axis(axis, a.ndim, "maxout_backward")
    k = _pieces(pieces, a.shape[ax], "maxout_backward")
    gshape = a.shape[:ax] + (a.shape[ax] // k,) + a.shape[ax + 1 :]
    if g.shape != gshape:
        raise ValueError(
            f"maxout_backward: grad has shape {g.shape}; maxout of x {a.shape} with "
            f"pieces={k} along axis {ax} has shape {gshape}"
        )
    res = L.result_array(a.shape, dt, out, like=a)
    work = L.work(res, dt)
    if work.size:
        g, a = D._detach([g, a], work)
        lead, (xv, ov, gv) = _maxout_views([a, work], [g], ax, k)
        kern = K.maxout_bwd(L.parallel(target, a.size, "linear"))
        for idx in L.lead_indices(lead):
            kern(gv[idx], xv[idx], ov[idx])
    L.finish(work, res)
    return res
