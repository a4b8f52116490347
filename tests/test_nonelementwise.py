"""prelu, maxout, softmax, log_softmax and their backward passes: NumPy/SciPy references,
finite differences, strided views and in place, special values, errors, cpu == parallel."""

from __future__ import annotations

import numpy as np
import pytest

import fastact
from fastact import _cuda

sp = pytest.importorskip("scipy.special")

RNG = np.random.default_rng(1234)
TARGETS = ["cpu", "parallel"]


def randn(*shape, dtype=np.float64):
    return RNG.standard_normal(shape).astype(dtype)


def strided_views():
    """(name, array) pairs covering contiguous, transposed, sliced and negative strides."""
    base = randn(6, 10, 12)
    return [
        ("c", randn(4, 5, 6)),
        ("f", np.asfortranarray(randn(4, 5, 6))),
        ("slice", base[::2, 1:9:3, ::-2]),
        ("transpose", base.transpose(2, 0, 1)),
    ]


VIEWS = strided_views()


# ------------------------------------------------------------------ softmax forward
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("name,x", VIEWS, ids=[v[0] for v in VIEWS])
def test_softmax_matches_scipy_any_axis_any_strides(log, axis, name, x):
    f, ref = (fastact.log_softmax, sp.log_softmax) if log else (fastact.softmax, sp.softmax)
    before = x.copy()
    expect = ref(x, axis=axis)
    for t in TARGETS:
        np.testing.assert_allclose(f(x, axis=axis, target=t), expect, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(x, before)  # out of place leaves x alone


@pytest.mark.parametrize("log", [False, True])
def test_softmax_float32_stays_float32(log):
    f, ref = (fastact.log_softmax, sp.log_softmax) if log else (fastact.softmax, sp.softmax)
    x = randn(33, 2100, dtype=np.float32) * 10  # rows longer than a log-softmax chunk
    y = f(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, ref(x.astype(np.float64), axis=-1), rtol=2e-5, atol=2e-6)
    assert f(np.float16([1, 2])).dtype == np.float32
    assert f([1, 2, 3]).dtype == np.float64  # lists and ints compute in float64


@pytest.mark.parametrize("log", [False, True])
def test_softmax_inplace_writes_through_strided_view(log):
    f, f_, ref = (
        (fastact.log_softmax, fastact.log_softmax_, sp.log_softmax)
        if log
        else (fastact.softmax, fastact.softmax_, sp.softmax)
    )
    for axis in (0, 1):
        base = randn(8, 9)
        keep = base.copy()
        v = base[1::2, ::-3]
        expect = ref(v, axis=axis)
        assert f_(v, axis=axis) is v
        np.testing.assert_allclose(v, expect, rtol=1e-13, atol=1e-15)
        mask = np.ones(base.shape, bool)
        mask[1::2, ::-3] = False
        np.testing.assert_array_equal(base[mask], keep[mask])
        out = np.empty_like(v)
        assert f(keep[1::2, ::-3], axis=axis, out=out) is out
        np.testing.assert_allclose(out, expect, rtol=1e-13, atol=1e-15)


def test_softmax_out_with_other_dtype_and_overlap():
    x = randn(5, 6, dtype=np.float32)
    out = np.empty((5, 6), np.float64)
    fastact.softmax(x, out=out)
    np.testing.assert_allclose(out, sp.softmax(x.astype(np.float64), axis=-1), rtol=1e-6)
    # out overlapping x without being x: NumPy's rule, computed as if from a copy
    a = randn(4, 8)
    expect = sp.softmax(a[:, :4], axis=-1)
    fastact.softmax(a[:, :4], out=a[:, 2:6])
    np.testing.assert_allclose(a[:, 2:6], expect, rtol=1e-13)


def test_softmax_special_values():
    inf, nan = np.inf, np.nan
    for dt in (np.float32, np.float64):
        x = np.array(
            [
                [-inf, -inf, -inf],  # all -inf: NaN, as torch and scipy
                [0.0, -inf, 1.0],  # -inf beside finite: 0 / -inf
                [1.0, inf, 2.0],  # +inf: NaN
                [1.0, nan, 2.0],  # NaN: NaN
                [np.finfo(dt).max, np.finfo(dt).max, -np.finfo(dt).max],  # huge
            ],
            dt,
        )
        with np.errstate(all="ignore"):
            for t in TARGETS:
                y = fastact.softmax(x, target=t)
                z = fastact.log_softmax(x, target=t)
                assert np.isnan(y[:1]).all() and np.isnan(z[:1]).all()
                np.testing.assert_allclose(y[1], sp.softmax([0.0, -inf, 1.0]), rtol=1e-6)
                assert z[1, 1] == -inf and np.isfinite(z[1, [0, 2]]).all()
                assert np.isnan(y[2:4]).all() and np.isnan(z[2:4]).all()
                np.testing.assert_allclose(y[4], [0.5, 0.5, 0.0])
                np.testing.assert_allclose(z[4, :2], [-np.log(2)] * 2, rtol=1e-6)
                assert z[4, 2] == -inf
            # along axis 0 (the column kernel) the same
            np.testing.assert_array_equal(
                fastact.softmax(x.T.copy(), axis=0), fastact.softmax(x, axis=1).T
            )
            np.testing.assert_allclose(
                fastact.softmax(x.T.copy(), axis=0)[:, 1:2].ravel(),
                fastact.softmax(x, axis=1)[1],
                rtol=1e-6,
            )


def test_softmax_empty_and_size_one():
    for shape, axis in [((0, 5), -1), ((3, 0), -1), ((3, 0), 0), ((0,), 0)]:
        x = np.ones(shape)
        for f in (fastact.softmax, fastact.log_softmax):
            assert f(x, axis=axis).shape == shape
        fastact.softmax_(x, axis=axis)
    np.testing.assert_array_equal(fastact.softmax(randn(4, 1)), np.ones((4, 1)))
    np.testing.assert_array_equal(fastact.log_softmax(randn(4, 1)), np.zeros((4, 1)))


# ------------------------------------------------------------------ softmax backward
def _numerical_vjp(f, x, g, axis, eps=1e-6):
    """d/dx of sum(g * f(x, axis)) by central differences."""
    d = np.empty_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        d[i] = (np.sum(g * f(xp, axis=axis)) - np.sum(g * f(xm, axis=axis))) / (2 * eps)
    return d


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_softmax_backward_matches_finite_differences(log, axis):
    fwd = fastact.log_softmax if log else fastact.softmax
    bwd = fastact.log_softmax_backward if log else fastact.softmax_backward
    x, g = randn(3, 4, 5), randn(3, 4, 5)
    y = fwd(x, axis=axis)
    expect = _numerical_vjp(fwd, x, g, axis)
    for t in TARGETS:
        np.testing.assert_allclose(bwd(g, y, axis=axis, target=t), expect, rtol=1e-6, atol=1e-8)
    # strided grad and y, and in place into grad
    gs, ys = np.asfortranarray(g), np.asfortranarray(y)
    assert bwd(gs, ys, axis=axis, out=gs) is gs
    np.testing.assert_allclose(gs, expect, rtol=1e-6, atol=1e-8)


def test_softmax_backward_formulas_float32():
    g, x = randn(7, 300, dtype=np.float32), randn(7, 300, dtype=np.float32)
    y = fastact.softmax(x)
    g64, y64 = g.astype(np.float64), y.astype(np.float64)
    r = fastact.softmax_backward(g, y)
    assert r.dtype == np.float32
    np.testing.assert_allclose(
        r, y64 * (g64 - (g64 * y64).sum(-1, keepdims=True)), rtol=1e-4, atol=1e-6
    )
    z = fastact.log_softmax(x)
    z64 = z.astype(np.float64)
    r = fastact.log_softmax_backward(g, z)
    np.testing.assert_allclose(r, g64 - np.exp(z64) * g64.sum(-1, keepdims=True), atol=2e-5)


# ------------------------------------------------------------------ PReLU
def prelu_ref(x, w):
    w = np.asarray(w, np.float64).ravel()
    if w.size > 1:
        w = w.reshape((1, -1) + (1,) * (x.ndim - 2))
    return np.where(x > 0, x, w * x), np.where(x > 0, 1.0, w + 0 * x)


PRELU_CASES = [
    ("1d-scalar", randn(50), 0.25),
    ("2d-per-channel", randn(40, 7), randn(7)),
    ("4d-per-channel", randn(3, 5, 4, 6), randn(5)),
    ("4d-one", randn(3, 5, 4, 6), np.array([0.1])),
    ("4d-strided", randn(6, 5, 8, 6)[::2, :, ::-3, 1:], randn(5)),
    ("4d-channels-last", randn(3, 4, 6, 5).transpose(0, 3, 1, 2), randn(5)),
]


@pytest.mark.parametrize("name,x,w", PRELU_CASES, ids=[c[0] for c in PRELU_CASES])
def test_prelu_forward_grad_inplace(name, x, w):
    f_ref, d_ref = prelu_ref(x, w)
    for t in TARGETS:
        np.testing.assert_array_equal(fastact.prelu(x, w, target=t), f_ref)
        np.testing.assert_array_equal(fastact.prelu_grad(x, w, target=t), d_ref)
    v = x.copy() if name != "4d-strided" else randn(6, 5, 8, 6)[::2, :, ::-3, 1:]
    ref_v = prelu_ref(v, w)[0]
    assert fastact.prelu_(v, w) is v
    np.testing.assert_array_equal(v, ref_v)


@pytest.mark.parametrize("name,x,w", PRELU_CASES, ids=[c[0] for c in PRELU_CASES])
def test_prelu_backward_finite_differences(name, x, w):
    g = randn(*x.shape)
    wa = np.asarray(w, np.float64)
    gx, gw = fastact.prelu_backward(g, x, wa)
    assert gw.shape == wa.shape
    np.testing.assert_allclose(gx, g * prelu_ref(x, wa)[1], rtol=1e-15)
    eps = 1e-6
    num = np.empty(wa.size)
    for c in range(wa.size):
        wp, wm = wa.copy().ravel(), wa.copy().ravel()
        wp[c] += eps
        wm[c] -= eps
        num[c] = (
            np.sum(g * prelu_ref(x, wp.reshape(wa.shape))[0])
            - np.sum(g * prelu_ref(x, wm.reshape(wa.shape))[0])
        ) / (2 * eps)
    np.testing.assert_allclose(gw.ravel(), num, rtol=1e-6, atol=1e-8)
    gx2, gw2 = fastact.prelu_backward(g, x, wa, target="parallel")
    np.testing.assert_array_equal(gx2, gx)
    np.testing.assert_array_equal(gw2, gw)


def test_prelu_conventions():
    x = np.array([-2.0, -0.0, 0.0, 3.0, np.nan, -np.inf, np.inf], np.float32)
    w = np.float32(0.25)
    np.testing.assert_array_equal(fastact.prelu(x, w), fastact.leaky_relu(x, negative_slope=w))
    d = fastact.prelu_grad(x, w)
    np.testing.assert_array_equal(d, [0.25, 0.25, 0.25, 1, np.nan, 0.25, 1])  # prelu'(0) = w
    assert fastact.prelu(x, w).dtype == np.float32
    z = fastact.prelu(np.array([-1.0, -0.0]), 0.0)
    assert not np.signbit(z).any()  # zero slope gives +0 (as fastact.leaky_relu)
    assert np.isscalar(fastact.prelu(np.float64(-2.0), 0.5))


# ------------------------------------------------------------------ maxout
def maxout_ref(x, k, axis):
    xm = np.moveaxis(x, axis, -1)
    r = xm.reshape(xm.shape[:-1] + (-1, k)).max(-1)
    return np.moveaxis(r, -1, axis)


def maxout_bwd_ref(g, x, k, axis):
    xm = np.moveaxis(x, axis, -1)
    grp = xm.reshape(xm.shape[:-1] + (-1, k))
    idx = grp.argmax(-1)
    gm = np.moveaxis(g, axis, -1)
    d = (np.arange(k) == idx[..., None]) * gm[..., None]
    return np.moveaxis(d.reshape(xm.shape), -1, axis)


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("name,x", VIEWS, ids=[v[0] for v in VIEWS])
def test_maxout_forward_backward(axis, name, x):
    n = x.shape[axis]
    k = 2 if n % 2 == 0 else (3 if n % 3 == 0 else n)
    expect = maxout_ref(x, k, axis)
    g = randn(*expect.shape)
    dexpect = maxout_bwd_ref(g, x, k, axis)
    for t in TARGETS:
        np.testing.assert_array_equal(fastact.maxout(x, k, axis=axis, target=t), expect)
        np.testing.assert_array_equal(
            fastact.maxout_backward(g, x, k, axis=axis, target=t), dexpect
        )


def test_maxout_nan_ties_and_out():
    x = np.array([[1.0, np.nan, 3.0, 3.0, 2.0, 2.0], [5.0, 5.0, np.nan, np.nan, -1.0, 0.0]])
    np.testing.assert_array_equal(fastact.maxout(x, 2), [[np.nan, 3.0, 2.0], [5.0, np.nan, 0.0]])
    g = np.array([[10.0, 20.0, 30.0], [40.0, 50.0, 60.0]])
    np.testing.assert_array_equal(
        fastact.maxout_backward(g, x, 2),
        [[0, 10, 20, 0, 30, 0], [40, 0, 50, 0, 0, 60]],  # first NaN, first tie
    )
    out = np.full((2, 3), -7.0, np.float32)
    assert fastact.maxout(x, 2, out=out) is out
    assert fastact.maxout(np.zeros((3, 0)), 4).shape == (3, 0)


# ------------------------------------------------------------------ cpu == parallel
def test_cpu_equals_parallel_bitwise_large():
    x = randn(300, 257, dtype=np.float32) * 30
    g = randn(300, 257, dtype=np.float32)
    for f in (fastact.softmax, fastact.log_softmax):
        for axis in (0, 1):
            a = f(x, axis=axis, target="cpu")
            b = f(x, axis=axis, target="parallel")
            assert a.tobytes() == b.tobytes()
            bw = fastact.softmax_backward if f is fastact.softmax else fastact.log_softmax_backward
            assert (
                bw(g, a, axis=axis, target="cpu").tobytes()
                == bw(g, a, axis=axis, target="parallel").tobytes()
            )
    xb = randn(70, 3, 90, dtype=np.float32)
    gb = randn(70, 3, 90, dtype=np.float32)
    w = randn(3, dtype=np.float32)
    r1, r2 = (fastact.prelu_backward(gb, xb, w, target=t) for t in TARGETS)
    assert r1[0].tobytes() == r2[0].tobytes() and r1[1].tobytes() == r2[1].tobytes()


# ------------------------------------------------------------------ errors
class FakeDask:
    __module__ = "dask.array.core"


FakeDask.__module__ = "dask.array.core"


def test_errors_leave_buffers_untouched():
    x = randn(4, 6)
    keep = x.copy()
    out = np.zeros((4, 6))
    bad_axes = [2, -3, 1.0, None, True, (0,)]
    for f in (fastact.softmax, fastact.log_softmax):
        for ax in bad_axes:
            with pytest.raises(ValueError):
                f(x, axis=ax, out=out)
        with pytest.raises(ValueError):
            f(np.float64(1.0))  # 0-d: no axis
        with pytest.raises(ValueError):
            f(x, out=np.zeros((6, 4)))
        with pytest.raises(TypeError):
            f(x, out=np.zeros((4, 6), np.int64))
        with pytest.raises(ValueError, match="target"):
            f(x, target="gpu")
    for f_ in (fastact.softmax_, fastact.log_softmax_):
        with pytest.raises(ValueError):
            f_(x, axis=5)
        with pytest.raises(TypeError):
            f_(np.arange(4))
        ro = x.copy()
        ro.flags.writeable = False
        with pytest.raises(ValueError):
            f_(ro)
        with pytest.raises(TypeError, match="dask"):
            f_(FakeDask())
    for bw in (fastact.softmax_backward, fastact.log_softmax_backward):
        with pytest.raises(ValueError):
            bw(x, x[:, :3], out=out)
        with pytest.raises(ValueError):
            bw(x, x, axis=3, out=out)
    with pytest.raises(ValueError, match="divisible"):
        fastact.maxout(x, 4, out=out[:, :1])
    for p in (0, -2, 1.5, True):
        with pytest.raises(ValueError):
            fastact.maxout(x, p)
    with pytest.raises(ValueError):
        fastact.maxout(x, 2, axis=2)
    with pytest.raises(ValueError):
        fastact.maxout_backward(np.ones((4, 2)), x, 2, out=out)  # grad should be (4, 3)
    with pytest.raises(ValueError, match="weight"):
        fastact.prelu(x, np.ones(4), out=out)
    with pytest.raises(ValueError, match="weight"):
        fastact.prelu_(x, np.ones(5))
    with pytest.raises(ValueError, match="weight"):
        fastact.prelu(np.ones(6), np.ones(6))  # 1-d x has no channel axis
    with pytest.raises(ValueError):
        fastact.prelu_backward(x, x[:2], 0.1, out=out)
    with pytest.raises(TypeError):
        fastact.prelu_(np.arange(6), 0.1)
    with pytest.raises(TypeError, match="dask"):
        fastact.prelu_(FakeDask(), 0.1)
    np.testing.assert_array_equal(x, keep)
    assert not out.any()


@pytest.mark.skipif(_cuda.available(), reason="a GPU is present")
def test_cuda_target_without_gpu_is_runtime_error():
    x = randn(3, 4)
    for call in (
        lambda: fastact.softmax(x, target="cuda"),
        lambda: fastact.log_softmax_(x, target="cuda"),
        lambda: fastact.softmax_backward(x, x, target="cuda"),
        lambda: fastact.prelu(x, np.ones(4), target="cuda"),
        lambda: fastact.maxout(x, 2, target="cuda"),
    ):
        with pytest.raises(RuntimeError):
            call()


def test_exports_and_docs():
    for name in (
        "prelu prelu_ prelu_grad prelu_backward maxout maxout_backward softmax softmax_ "
        "softmax_backward log_softmax log_softmax_ log_softmax_backward"
    ).split():
        f = getattr(fastact, name)
        assert name in fastact.__all__
        assert f.__doc__ and "target" in f.__doc__
