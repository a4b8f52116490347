"""Special values (SPEC §3): NaN in -> NaN out, limits at ±inf, the values at the kinks that
SPEC §1 fixes (PyTorch's autograd conventions), subnormal inputs, and the derivative against
a central finite difference on smooth regions."""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest
from _reference import reference, variants

import fastact

VARIANTS = variants(fastact.ACTIVATIONS)
VIDS = [v[0] for v in VARIANTS]
DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("vid,act,params", VARIANTS, ids=VIDS)
def test_nan_in_nan_out(vid, act, params, dtype):
    x = np.full(4, np.nan, dtype)
    assert np.isnan(act.forward(x, **params)).all()
    assert np.isnan(act.grad(x, **params)).all()
    assert np.isnan(act.backward(np.ones_like(x), x, **params)).all()
    if act.from_output and not (
        params.get("negative_slope", 0) < 0 or params.get("alpha", 0) < 0
    ):
        assert np.isnan(act.backward(np.ones_like(x), y=x, **params)).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("vid,act,params", VARIANTS, ids=VIDS)
def test_infinities_give_the_limits(vid, act, params, dtype):
    """f(±inf) and f'(±inf) equal the reference at ±10^400 rounded to the dtype."""
    f_ref, d_ref = reference(act.name, params, dtype)
    x = np.array([np.inf, -np.inf], dtype)
    for fn, ref in ((act.forward, f_ref), (act.grad, d_ref)):
        got = fn(x, **params)
        for xi, gi in zip((mp.mpf("1e400"), mp.mpf("-1e400")), got):
            want = dtype(float(ref(xi)))
            assert not np.isnan(gi), f"{vid} gives NaN at {xi}"
            assert gi == want, f"{vid}: {fn.__name__}({xi}) = {gi}, limit {want}"


def _spec_kinks():
    """SPEC §1: derivatives at the kinks, as PyTorch's autograd defines them."""
    sixth32 = np.float32(1) / np.float32(6)
    return [
        ("relu", {}, 0.0, 0.0),
        ("relu6", {}, 0.0, 0.0),
        ("relu6", {}, 6.0, 0.0),
        ("leaky_relu", {"negative_slope": 0.2}, 0.0, 0.2),
        ("elu", {"alpha": 0.7}, 0.0, 0.7),
        ("selu", {}, 0.0, 1.0507009873554804934193349852946 * 1.6732632423543772848170429916717),
        ("celu", {"alpha": 2.0}, 0.0, 1.0),
        ("hardtanh", {"min_val": -2.0, "max_val": 0.5}, -2.0, 0.0),
        ("hardtanh", {"min_val": -2.0, "max_val": 0.5}, 0.5, 0.0),
        ("hardsigmoid", {}, 3.0, 0.0),
        ("hardsigmoid", {}, -3.0, 0.0),
        ("hardsigmoid", {}, 0.0, sixth32),
        ("hardsigmoid", {}, 2.9, sixth32),
        ("hardswish", {}, -3.0, 0.0),
        ("hardswish", {}, 3.0, 1.0),
        ("softshrink", {"lambd": 0.5}, 0.5, 0.0),
        ("softshrink", {"lambd": 0.5}, -0.5, 0.0),
        ("hardshrink", {"lambd": 0.5}, 0.5, 0.0),
        ("hardshrink", {"lambd": 0.5}, -0.5, 0.0),
        ("binary_step", {}, 0.0, 0.0),
    ]


@pytest.mark.parametrize("name,params,x0,want", _spec_kinks())
def test_derivative_at_kinks_follows_pytorch(name, params, x0, want):
    act = fastact.ACTIVATIONS[name]
    x = np.array([x0], np.float32)
    got = act.grad(x, **params)[0]
    assert got == np.float32(want), f"{name}'({x0}) = {got}, SPEC says {want}"
    g = np.array([2.0], np.float32)
    assert act.backward(g, x, **params)[0] == np.float32(2 * np.float32(want))
    if act.from_output:
        y = act.forward(x, **params)
        assert act.backward(g, y=y, **params)[0] == np.float32(2 * np.float32(want))


def test_hardsigmoid_grad_is_exactly_one_sixth_in_the_dtype():
    for dt in DTYPES:
        inside = np.linspace(-2.9, 2.9, 7, dtype=dt)
        assert (fastact.hardsigmoid_grad(inside) == dt(1) / dt(6)).all()


def test_binary_step_derivative_is_zero_but_nan():
    x = np.array([-np.inf, -1.0, 0.0, 2.0, np.inf, np.nan])
    got = fastact.binary_step_grad(x)
    assert (got[:-1] == 0).all() and np.isnan(got[-1])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", ["relu", "softplus", "gelu", "mish", "hardswish"])
def test_special_values_raise_no_warning(name, dtype, monkeypatch):
    """The formulas handle ±inf, NaN, overflow and subnormals by selects, so the floating-point
    flags they raise on the way (inf - inf in a branch not taken; NaN compared in relu) mean
    nothing: no call warns, as np.tanh(np.inf) does not, in every form the small calls take
    (their ufunc clears the flags NumPy would report), strided too. (Five activations whose
    kernels raise every flag: each compiles its ufuncs.)"""
    import warnings

    from fastact import _dispatch

    monkeypatch.setattr(_dispatch.SerialUfuncs, "WARM_CALLS", 1)  # the ufunc from the start
    act = fastact.ACTIVATIONS[name]
    fi = np.finfo(dtype)
    x = np.array([np.inf, -np.inf, np.nan, fi.max, -fi.max, 1e4, -1e4, 100, -100, 0, -0.0,
                  fi.smallest_subnormal, -fi.tiny, 1, -1] * 5, dtype)
    g = np.linspace(-fi.max, fi.max, x.size).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for a, b in ((x, g), (x[::-2], g[::2])):
            act.forward(a)
            act.forward(a, out=np.empty_like(a))
            act.forward_(a.copy())
            act.grad(a)
            act.backward(b, a)
            h = b.copy()
            act.backward(h, a, out=h)
            act.backward(b, a, target="parallel")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_subnormal_inputs_are_not_flushed(dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    x = np.array([tiny * 3, -tiny * 5], dtype)
    for name in ("relu", "leaky_relu", "elu", "tanh", "softsign", "softplus", "silu", "gelu"):
        y = fastact.ACTIVATIONS[name].forward(x)
        assert y[0] != 0, f"{name} flushed a subnormal input to zero"


@pytest.mark.parametrize("vid,act,params", VARIANTS, ids=VIDS)
def test_derivative_matches_central_difference(vid, act, params):
    """float64, smooth regions only (away from kinks and thresholds)."""
    x = np.random.default_rng(11).uniform(-5, 5, 400)
    kinks = [0.0, 6.0, 3.0, -3.0] + [
        float(v) * s for k, v in params.items() if k != "approximate" for s in (1, -1)
    ]
    x = x[np.min(np.abs(x[:, None] - np.array(kinks)[None, :]), axis=1) > 1e-3]
    h = 1e-6
    fd = (act.forward(x + h, **params) - act.forward(x - h, **params)) / (2 * h)
    np.testing.assert_allclose(act.grad(x, **params), fd, rtol=2e-6, atol=2e-7)
