"""The four public functions of an elementwise activation, generated from its registry record.

``NAME(x)``, ``NAME_(x)``, ``NAME_grad(x)``, ``NAME_backward(grad, x=None, *, y=None)``:
closures with a real ``__signature__`` and a docstring from one template.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from . import _dispatch as D
from ._registry import Activation

_NDARRAY = np.ndarray
_F32, _F64 = D._F32, D._F64  # (the fast paths compare dtypes by identity)

_DOC = """{title}

    f(x) = {formula}
{params}
    {kinks}

    Parameters
    ----------
    {args}
    target : {{"auto", "cpu", "parallel", "cuda"}}
        "auto" runs CUDA arrays on the GPU, large host arrays on all cores and small ones
        on one thread. "cpu" and "parallel" give bitwise identical results.
    stream : numba CUDA stream, optional
        The stream for the CUDA target (ignored on the CPU).

    Returns
    -------
    {returns}

    See Also
    --------
    {see_also}
"""

_ARGS = {
    "forward": "x : array_like\n        Input; integers, bools and lists are computed in float64.\n"
    "    out : ndarray, optional\n        Where to write the result (NumPy's ufunc rules; "
    "``out=x`` works in place).",
    "forward_": "x : ndarray of float32 or float64\n        Overwritten with f(x) "
    "(views and strided arrays are written through).",
    "grad": "x : array_like\n        Input.\n    out : ndarray, optional\n        Where to "
    "write f'(x).",
    "backward": "grad : array_like\n        Gradient of the loss with respect to f(x).\n"
    "    x : array_like, optional\n        The input of the forward pass.\n"
    "    y : array_like, optional\n        Its output, instead of x (where f' is a "
    "function of f).\n    out : ndarray, optional\n        Where to write grad * f'(x); "
    "``out=grad`` works in place.",
}
_RETURNS = {
    "forward": "ndarray (or a NumPy scalar for a 0-d input without out)",
    "forward_": "ndarray: x itself",
    "grad": "ndarray: f'(x)",
    "backward": "ndarray: grad * f'(x), in one pass",
}
_TITLES = {
    "forward": "{name}(x): apply the activation.",
    "forward_": "{name}_(x): apply the activation in place.",
    "grad": "{name}_grad(x): its derivative f'(x).",
    "backward": "{name}_backward(grad, x | y=): grad * f'(x), the backward pass.",
}


def _doc(act: Activation, kind: str) -> str:
    params = ""
    if act.params:
        params = "\n    Keyword parameters (PyTorch's names and defaults): " + ", ".join(
            f"{k}={v!r}" for k, v in act.params.items()
        )
    return _DOC.format(
        title=_TITLES[kind].format(name=act.name),
        formula=act.formula,
        params=params,
        kinks=act.kinks,
        args=_ARGS[kind],
        returns=_RETURNS[kind],
        see_also=act.see_also or "fastact.ACTIVATIONS",
    )


def _signature(act: Activation, kind: str) -> inspect.Signature:
    P = inspect.Parameter
    first = ["grad", "x"] if kind == "backward" else ["x"]
    ps = [P(first[0], P.POSITIONAL_OR_KEYWORD)]
    if kind == "backward":
        ps.append(P("x", P.POSITIONAL_OR_KEYWORD, default=None))
        ps.append(P("y", P.KEYWORD_ONLY, default=None))
    ps += [P(k, P.KEYWORD_ONLY, default=v) for k, v in act.params.items()]
    if kind != "forward_":
        ps.append(P("out", P.KEYWORD_ONLY, default=None))
    ps.append(P("target", P.KEYWORD_ONLY, default="auto"))
    ps.append(P("stream", P.KEYWORD_ONLY, default=None))
    return inspect.Signature(ps)


def _merge(act: Activation, fname: str, kw: dict[str, Any]) -> dict[str, Any]:
    for k in kw:
        if k not in act.params:
            raise TypeError(f"{fname}() got an unexpected keyword argument {k!r}")
    return {**act.params, **kw}


def _cuda(fn, inputs, params, out, inplace, stream):
    from . import _cuda

    return _cuda.run(fn, inputs, params, out=out, inplace=inplace, stream=stream)


def _dask(fn, args: tuple, kwargs: dict):
    from . import _dask

    return _dask.apply(fn, args, kwargs)


def _make(act: Activation, kind: str):
    fname = act.name + {"forward": "", "forward_": "_", "grad": "_grad", "backward": "_backward"}[
        kind
    ]
    pick = "grad" if kind in ("grad", "backward") else "f"
    resolved: dict = {}  # (keyword items, from_y) -> (formulas, float params), validated
    defaults: list = []  # [resolve({})], once known

    def resolve(kw, from_y=False):
        if not kw and not from_y and defaults:  # most calls: no tuple, no try
            return defaults[0]
        try:
            # the default parameters (most calls) key by from_y alone: no tuple to build
            key = (tuple((k, v, type(v)) for k, v in kw.items()), from_y) if kw else from_y
            return resolved[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable parameter value: validation will say what is wrong
            return act.resolve(_merge(act, fname, kw), from_y=from_y)
        res = act.resolve(_merge(act, fname, kw), from_y=from_y)
        if len(resolved) > 1024:
            resolved.clear()
        resolved[key] = res
        if key is False:
            defaults.append(res)
        return res

    # Small calls with the default parameters on float arrays (most calls) go straight to a
    # NumPy ufunc whose loop is the compiled one-thread kernel, once the function has been
    # called a few times: NumPy's C code checks the arrays, allocates and applies its overlap
    # rules (a Python version of those costs about 0.5 µs, half a 1,000-element call).
    # Anything it refuses (a read-only out, one of a dtype it cannot cast to) takes the
    # general path, which says what is wrong. The ufunc is picked inline, by the identity of
    # the dtype: a helper method would cost 0.05 µs a call, a dict lookup by dtype as much.
    def default():
        formulas, p = resolve({})
        return getattr(formulas, pick), p

    ufuncs = D.SerialUfuncs(default, 2 if kind == "backward" else 1)  # (g·f'(x): two inputs)
    family = act.family_for(kind == "backward")
    limit = D.parallel_threshold(family, backward=kind == "backward")

    def unary(x, *, out=None, target="auto", stream=None, **kw):
        if (
            type(x) is _NDARRAY
            and not kw
            and stream is None
            and (target == "auto" and x.size < limit or target == "cpu")
        ):
            dt = x.dtype
            uf = ufuncs.f32 if dt is _F32 else ufuncs.f64 if dt is _F64 else None
            if uf is None:
                uf = ufuncs.warm(dt)
            if uf is not None:
                if out is None:
                    return uf(x)
                if out is x or type(out) is _NDARRAY and out.shape == x.shape:
                    try:
                        return uf(x, out)
                    except (TypeError, ValueError):
                        pass
        formulas, p = resolve(kw)
        fn = getattr(formulas, pick)
        if stream is None:  # (the fast path takes only the CPU targets)
            res = D.try_fast_unary(fn, x, out, p, family, target)
            if res is not None:
                return res if out is not None or res.ndim else res[()]
        D.check_target(target)
        if D.is_dask_array(x):
            return _dask(public, (x,), dict(kw, out=out, target=target))
        if target == "cuda" or D.is_cuda_array(x):
            return _cuda(fn, [x], p, out, False, stream)
        a = D.as_input(x)
        if out is None:
            res = np.empty_like(a)
        else:
            res = D.check_out(out, a.shape, a.dtype)
        D.run_cpu(fn, [a], p, res, D.choose_cpu_target(target, a.size, family))
        return D.wrap_result(res, out, x)

    def inplace(x, *, target="auto", stream=None, **kw):
        if (
            type(x) is _NDARRAY
            and not kw
            and stream is None
            and (target == "auto" and x.size < limit or target == "cpu")
        ):
            dt = x.dtype
            uf = ufuncs.f32 if dt is _F32 else ufuncs.f64 if dt is _F64 else None
            if uf is None:
                uf = ufuncs.warm(dt)
            if uf is not None:
                try:
                    return uf(x, x)
                except ValueError:  # read-only
                    pass
        formulas, p = resolve(kw)
        if stream is None:  # (the fast path takes only the CPU targets)
            res = D.try_fast_unary(formulas.f, x, x, p, family, target)
            if res is not None:
                return res
        D.check_target(target)
        if target == "cuda" or D.is_cuda_array(x):
            return _cuda(formulas.f, [x], p, x, True, stream)
        if D.is_dask_array(x):
            raise TypeError(
                f"{fname} cannot work in place on a dask array; use {act.name}(x) instead"
            )
        a = D.check_inplace(x)
        D.run_cpu(formulas.f, [a], p, a, D.choose_cpu_target(target, a.size, family))
        return x

    def backward(grad, x=None, *, y=None, out=None, target="auto", stream=None, **kw):
        # (the cheap tests first, each condition tested once; into a new array, the commonest
        # small call, first: about 0.04 µs less than testing for out=grad first)
        if type(x) is _NDARRAY is type(grad) and y is None and stream is None and not kw:
            dt = x.dtype
            if grad.dtype is dt:
                uf = ufuncs.f32 if dt is _F32 else ufuncs.f64 if dt is _F64 else None
                if out is not grad:
                    # (sizes, not shapes: comparing two shape tuples cost 0.12 µs a call;
                    # broadcasting to a larger size takes the general path)
                    n = x.size
                    if n == grad.size and (n < limit and target == "auto" or target == "cpu"):
                        if uf is None:
                            uf = ufuncs.warm(dt)
                        if uf is not None:
                            if out is None:
                                try:
                                    res = uf(grad, x)
                                except ValueError:  # shapes of one size that do not broadcast
                                    pass
                                else:
                                    if res.size == n or target == "cpu":  # (else an outer
                                        return res  # product: the general path picks threads)
                            elif type(out) is _NDARRAY and out.shape == x.shape:
                                try:
                                    return uf(grad, x, out)
                                except (TypeError, ValueError):
                                    pass
                elif grad.size < limit and target == "auto" or target == "cpu":
                    # in place: the result has grad's shape (x broadcasts to it)
                    if uf is None:
                        uf = ufuncs.warm(dt)
                    if uf is not None:
                        try:
                            return uf(grad, x, grad)
                        except ValueError:  # read-only; x does not broadcast to grad
                            pass
        D.check_target(target)
        if (x is None) == (y is None):
            raise ValueError(f"{fname}: pass exactly one of x= (the input) and y= (the output)")
        if y is not None and not act.from_output:
            raise ValueError(
                f"{fname}: the derivative of {act.name} is not a function of its output; "
                "pass the input x= instead of y="
            )
        formulas, p = resolve(kw, from_y=y is not None)
        fn = formulas.grad if y is None else formulas.grad_y
        v = x if y is None else y
        if stream is None:  # (the fast path takes only the CPU targets)
            res = D.try_fast_backward(fn, grad, v, out, p, family, target)
            if res is not None:
                return res if out is not None or res.ndim else res[()]
        if D.is_dask_array(grad) or D.is_dask_array(v):
            return _dask(public, (grad, x), dict(kw, y=y, out=out, target=target))
        if target == "cuda" or D.is_cuda_array(grad) or D.is_cuda_array(v):
            return _cuda(fn, [grad, v], p, out, False, stream)
        g, a = D.as_input(grad, "grad"), D.as_input(v, "x" if y is None else "y")
        dt = np.promote_types(g.dtype, a.dtype)
        g, a = g.astype(dt, copy=False), a.astype(dt, copy=False)
        try:
            shape = np.broadcast_shapes(g.shape, a.shape)
        except ValueError:
            raise ValueError(
                f"{fname}: grad of shape {g.shape} and {'x' if y is None else 'y'} of shape "
                f"{a.shape} do not broadcast"
            ) from None
        res = np.empty(shape, dt) if out is None else D.check_out(out, shape, dt)
        parallel = D.choose_cpu_target(target, res.size, family, backward=True)
        D.run_cpu(fn, [g, a], p, res, parallel)
        return D.wrap_result(res, out, grad)

    public = {"forward": unary, "grad": unary, "forward_": inplace, "backward": backward}[kind]
    public.__name__ = public.__qualname__ = fname
    public.__module__ = "fastact"
    public.__doc__ = _doc(act, kind)
    public.__signature__ = _signature(act, kind)
    return public


def build(act: Activation) -> None:
    """Create the four public functions of ``act`` and attach them to the record."""
    act.forward = _make(act, "forward")
    act.forward_ = _make(act, "forward_")
    act.grad = _make(act, "grad")
    act.backward = _make(act, "backward")
