"""The public API of the elementwise activations (SPEC §1-§3), parametrised over the registry:
names and signatures, shapes and dtypes, out=, in place through views, errors that leave
every buffer untouched, cpu == parallel bitwise."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from _reference import REF, variants

import fastact

ACTS = list(fastact.ACTIVATIONS.values())
IDS = [a.name for a in ACTS]
SPEC_NAMES = {
    "binary_step", "sigmoid", "tanh", "relu", "relu6", "leaky_relu", "elu", "selu", "celu",
    "gelu", "silu", "mish", "softplus", "softsign", "hardtanh", "hardsigmoid", "hardswish",
    "log_sigmoid", "tanhshrink", "softshrink", "hardshrink",
}  # fmt: skip
SPEC_FROM_OUTPUT = {
    "sigmoid", "tanh", "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "softplus",
    "softsign", "hardtanh", "hardsigmoid", "binary_step", "log_sigmoid", "softshrink",
    "hardshrink",
}  # fmt: skip
SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, 3.0, -3.0, 6.0, 0.5, -0.5, 20.0, -20.0, 1e-30, -1e-30,
                    1e30, -1e30, 88.5, -88.5, 710.0, -710.0, np.inf, -np.inf, np.nan])  # fmt: skip


def data(dtype=np.float64, n=64, seed=0):
    x = np.random.default_rng(seed).uniform(-6, 6, n)
    return np.concatenate([x, SPECIAL]).astype(dtype)


# ------------------------------------------------------------------ registry
def test_registry_has_every_spec_activation_with_a_reference():
    assert set(fastact.ACTIVATIONS) == SPEC_NAMES
    assert set(REF) == SPEC_NAMES, "every activation needs an mpmath reference in tests/"
    assert {a.name for a in ACTS if a.from_output} == SPEC_FROM_OUTPUT


@pytest.mark.parametrize("act", ACTS, ids=IDS)
def test_public_functions_are_the_registry_objects(act):
    for attr, suffix in (("forward", ""), ("forward_", "_"), ("grad", "_grad"),
                         ("backward", "_backward")):  # fmt: skip
        fn = getattr(fastact, act.name + suffix)
        assert fn is getattr(act, attr)
        assert fn.__name__ == act.name + suffix
        assert act.formula.split()[0] in fn.__doc__ or act.name in fn.__doc__
        sig = inspect.signature(fn)
        for k, v in act.params.items():
            assert sig.parameters[k].default == v
            assert sig.parameters[k].kind is inspect.Parameter.KEYWORD_ONLY
        assert sig.parameters["target"].default == "auto"


# -------------------------------------------------------- shapes and dtypes
@pytest.mark.parametrize("act", ACTS, ids=IDS)
@pytest.mark.parametrize("shape", [(), (0,), (5,), (3, 4), (2, 3, 4)])
def test_shapes_dtypes_and_input_untouched(act, shape):
    for dtype in (np.float32, np.float64):
        x = np.random.default_rng(1).uniform(-4, 4, shape).astype(dtype)
        before = x.copy()
        y = act.forward(x)
        g = act.grad(x)
        b = act.backward(np.ones_like(x), x)
        np.testing.assert_array_equal(x, before)
        for r in (y, g, b):
            assert np.shape(r) == shape and r.dtype == dtype
        if shape == ():
            assert np.isscalar(y) or y.shape == ()
            assert not isinstance(y, np.ndarray)


@pytest.mark.parametrize("act", ACTS, ids=IDS)
def test_lists_ints_bools_compute_in_float64(act):
    for x in ([-1, 0, 2], np.array([-1, 0, 2], np.int16), np.array([True, False]), 3, 2.5):
        y = act.forward(x)
        assert np.asarray(y).dtype == np.float64
        np.testing.assert_array_equal(y, act.forward(np.asarray(x, np.float64)))


@pytest.mark.parametrize("act", ACTS, ids=IDS)
def test_float16_is_computed_in_float32(act):
    x = np.linspace(-3, 3, 9, dtype=np.float16)
    np.testing.assert_array_equal(act.forward(x), act.forward(x.astype(np.float32)))


# ----------------------------------------------------------- out= and views
@pytest.mark.parametrize("act", ACTS, ids=IDS)
def test_out_follows_ufunc_rules(act):
    x = data(np.float32)
    ref = act.forward(x)
    out = np.empty_like(x)
    assert act.forward(x, out=out) is out
    np.testing.assert_array_equal(out, ref)
    out64 = np.empty(x.shape, np.float64)  # float32 -> float64 is a same_kind cast
    act.forward(x, out=out64)
    np.testing.assert_array_equal(out64, ref.astype(np.float64))
    y = x.copy()
    assert act.forward(y, out=y) is y
    np.testing.assert_array_equal(y, ref)
    g = x.copy()
    assert act.grad(g, out=g) is g
    np.testing.assert_array_equal(g, act.grad(x))
    d = np.ones_like(x)
    assert act.backward(d, x, out=d) is d
    np.testing.assert_array_equal(d, act.backward(np.ones_like(x), x))


@pytest.mark.parametrize("act", ACTS, ids=IDS)
@pytest.mark.parametrize("view", ["step", "transpose", "negative", "column"])
def test_inplace_through_strided_view_writes_only_the_view(act, view):
    base = np.random.default_rng(3).uniform(-5, 5, (12, 10))
    v = {
        "step": lambda a: a[::2, 1::3],
        "transpose": lambda a: a.T,
        "negative": lambda a: a[::-1, ::-2],
        "column": lambda a: a[:, 3],
    }[view]
    expect = base.copy()
    v(expect)[...] = act.forward(v(base).copy())
    out = act.forward_(v(base))
    assert out.base is base or out is v(base) or np.shares_memory(out, base)
    np.testing.assert_array_equal(base, expect)


@pytest.mark.parametrize("act", ACTS[:6], ids=IDS[:6])
def test_partial_overlap_of_out_and_input(act):
    base = np.linspace(-4, 4, 41)
    expect = act.forward(base[:-1].copy())
    act.forward(base[:-1], out=base[1:])
    np.testing.assert_array_equal(base[1:], expect)


# ------------------------------------------------------------------ backward
@pytest.mark.parametrize("act", ACTS, ids=IDS)
def test_backward_x_y_rules(act):
    x = data()
    g = np.linspace(-1, 1, x.size)
    with pytest.raises(ValueError, match="exactly one"):
        act.backward(g)
    with pytest.raises(ValueError, match="exactly one"):
        act.backward(g, x, y=x)
    if act.from_output:
        y = act.forward(x)
        np.testing.assert_allclose(act.backward(g, y=y), act.backward(g, x), atol=1e-12)
    else:
        with pytest.raises(ValueError, match="not a function of its output"):
            act.backward(g, y=x)
    # a scalar gradient broadcasts; that path (a ufunc over the same formula) may contract
    # multiply-adds differently from the SIMD loop, so it agrees to the accuracy contract
    eps = np.finfo(np.float64).eps
    np.testing.assert_allclose(act.backward(2.0, x), 2.0 * act.grad(x), rtol=8 * eps, atol=8 * eps)


def test_backward_from_output_needs_nonnegative_slope_and_alpha():
    y = np.ones(3)
    with pytest.raises(ValueError, match="negative_slope"):
        fastact.leaky_relu_backward(y, y=y, negative_slope=-0.1)
    with pytest.raises(ValueError, match="alpha"):
        fastact.elu_backward(y, y=y, alpha=-1.0)
    fastact.leaky_relu_backward(y, y=y, negative_slope=0.0)


# ---------------------------------------------------- errors, buffers intact
def _bad_calls(act, x):
    p = dict(act.params)
    yield TypeError, lambda: act.forward_(x.astype(np.int32))
    yield TypeError, lambda: act.forward_(x.astype(np.complex128))
    yield TypeError, lambda: act.forward_(x.astype(object))
    yield TypeError, lambda: act.forward_(x.tolist())
    ro = x.copy()
    ro.flags.writeable = False
    yield ValueError, lambda: act.forward_(ro)
    yield ValueError, lambda: act.forward(x, out=np.empty(x.size + 1))
    yield TypeError, lambda: act.forward(x, out=np.empty(x.shape, np.int64))
    yield ValueError, lambda: act.forward(x, out=ro)
    yield ValueError, lambda: act.forward_(x, target="gpu")
    yield ValueError, lambda: act.backward(x, x, out=x, target="threads")
    yield ValueError, lambda: act.backward(x, x[:3], out=x)
    yield TypeError, lambda: act.forward(x, out=x, not_a_parameter=1)
    yield TypeError, lambda: act.forward(x.astype(np.complex64))
    for k, v in p.items():
        bad = "bogus" if isinstance(v, str) else float("nan")
        yield ValueError, lambda k=k, bad=bad: act.forward_(x, **{k: bad})


@pytest.mark.parametrize("act", ACTS, ids=IDS)
def test_errors_are_clear_and_leave_buffers_untouched(act):
    x = data()
    before = x.copy()
    for exc, call in _bad_calls(act, x):
        with pytest.raises(exc) as info:
            call()
        assert "numba" not in str(info.value).lower()
        np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize(
    "name,params,word",
    [
        ("celu", {"alpha": 0.0}, "alpha"),
        ("celu", {"alpha": -1.0}, "alpha"),
        ("hardtanh", {"min_val": 2.0, "max_val": 1.0}, "min_val"),
        ("softplus", {"beta": 0.0}, "beta"),
        ("softshrink", {"lambd": -0.5}, "lambd"),
        ("hardshrink", {"lambd": -0.5}, "lambd"),
        ("gelu", {"approximate": "erf"}, "approximate"),
    ],
)
def test_invalid_parameters_name_the_parameter(name, params, word):
    x = np.linspace(-1, 1, 5)
    before = x.copy()
    with pytest.raises(ValueError, match=word):
        getattr(fastact, name + "_")(x, **params)
    np.testing.assert_array_equal(x, before)


def test_unknown_target_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'cpu'.*'parallel'"):
        fastact.relu(np.ones(3), target="gpu")


def test_cuda_target_without_gpu_is_a_runtime_error():
    from fastact import _cuda

    if _cuda.available():
        pytest.skip("a GPU (or the CUDA simulator) is available here; see test_cuda_sim")
    with pytest.raises(RuntimeError, match="GPU"):
        fastact.sigmoid(np.ones(3), target="cuda")


# --------------------------------------------------------- cpu == parallel
@pytest.mark.parametrize("vid,act,params", variants(fastact.ACTIVATIONS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cpu_and_parallel_are_bitwise_identical(vid, act, params, dtype):
    x = np.concatenate([data(dtype, 5000, seed=4), np.float32([1e-40, -1e-40]).astype(dtype)])
    g = np.random.default_rng(5).uniform(-2, 2, x.size).astype(dtype)
    for fn, args in ((act.forward, (x,)), (act.grad, (x,)), (act.backward, (g, x))):
        a = fn(*args, target="cpu", **params)
        b = fn(*args, target="parallel", **params)
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))
    # every element goes through the same vector code: results do not depend on the length
    # (where the parallel chunks or the last partial block fall) or on in place vs out
    for fn in (act.forward, act.grad):
        whole = fn(x, target="parallel", **params)
        for cut in (1, 7, 63):
            part = fn(x[cut:], target="cpu", **params)
            np.testing.assert_array_equal(part.view(np.uint8), whole[cut:].view(np.uint8))
    y = x.copy()
    act.forward_(y, target="cpu", **params)
    np.testing.assert_array_equal(y.view(np.uint8), act.forward(x, **params).view(np.uint8))


def test_ndarray_subclasses_are_computed_on_their_data():
    m = np.ma.masked_array(np.linspace(-2, 2, 5), mask=[0, 1, 0, 0, 0])
    r = fastact.sigmoid(m)
    assert type(r) is np.ma.MaskedArray  # the subclass comes back, as from a ufunc
    np.testing.assert_array_equal(r.data, fastact.sigmoid(m.data))
    expect = fastact.sigmoid(m.data)
    assert fastact.sigmoid_(m) is m
    np.testing.assert_array_equal(m.data, expect)
    mat = np.asmatrix(np.linspace(-1, 1, 4).reshape(2, 2))
    b = fastact.relu_backward(mat, mat)
    assert type(b) is np.matrix
    np.testing.assert_array_equal(b.A, fastact.relu_grad(mat.A) * mat.A)
    out = np.ma.masked_array(np.zeros(5))
    assert fastact.tanh(np.linspace(-1, 1, 5), out=out) is out
    np.testing.assert_array_equal(out.data, np.tanh(np.linspace(-1, 1, 5)))


def _check_backward_paths(act, a, dtype, what):
    """backward(g, a) with g laid out like a: new array, in place into g, into out=, and
    with g the array a itself, against the general path on C-contiguous copies."""
    g = np.copy(a, order="K")
    g[...] = np.linspace(-2, 2, a.size).reshape(a.shape)
    dense = np.ascontiguousarray
    want = act.backward(dense(g, dtype), dense(a, dtype), target="parallel")
    got = act.backward(g, a)
    np.testing.assert_array_equal(got, want, err_msg=what)
    assert np.ndim(got) == a.ndim and np.asarray(got).dtype == dtype, what
    if a.ndim == 0:
        assert not isinstance(got, np.ndarray), what
    if not a.dtype.isnative:
        return
    h = g.copy()
    assert act.backward(h, a, out=h) is h
    np.testing.assert_array_equal(h, want, err_msg=what)
    o = np.empty_like(a)
    assert act.backward(g, a, out=o) is o
    np.testing.assert_array_equal(o, want, err_msg=what)
    b = a.copy()
    assert act.backward(b, b, out=b) is b
    np.testing.assert_array_equal(b, act.backward(dense(a), dense(a), target="parallel"))


def _ufunc_closure(fn):
    """The ``SerialUfuncs`` a public function closes over."""
    from fastact import _dispatch

    (found,) = [
        c.cell_contents for c in fn.__closure__
        if isinstance(c.cell_contents, _dispatch.SerialUfuncs)
    ]
    return found


def _rebuilt(act, monkeypatch, ufunc: bool):
    """A copy of ``act`` with public functions of its own, built with or without the ufunc
    of the small calls (without: what machines other than x86-64 run)."""
    import copy

    from fastact import _api, _ufunc_loop

    monkeypatch.setattr(_ufunc_loop, "AVAILABLE", ufunc and _ufunc_loop.AVAILABLE)
    twin = copy.copy(act)
    _api.build(twin)
    return twin


@pytest.mark.parametrize("ufunc", [True, False], ids=["ufunc", "entry points"])
@pytest.mark.parametrize("name", ["relu", "softplus"])
def test_short_path_of_small_calls_matches_the_general_one(name, ufunc, monkeypatch):
    """Small calls with the default parameters on float arrays skip the general path: a
    NumPy ufunc whose loop is the one-thread kernel (``_dispatch.SerialUfuncs``), or where
    none can be built, ``try_fast_unary`` and ``try_fast_backward``. Every form of input,
    forward, grad and backward, into a new array, in place or into out=, gives what the
    general path (target="parallel", or a strided view) gives; overlapping arrays are as if
    not overlapping; read-only input is refused."""
    from fastact import _ufunc_loop

    if ufunc and not _ufunc_loop.AVAILABLE:
        pytest.skip("no ufunc for small calls on this CPU (it needs x86-64's MXCSR)")
    from fastact import _dispatch

    act = _rebuilt(fastact.ACTIVATIONS[name], monkeypatch, ufunc)
    for _ in range(_dispatch.SerialUfuncs.WARM_CALLS - 1):  # (the first calls: no ufunc)
        act.forward(data(np.float32, 8))
    assert _ufunc_closure(act.forward).f32 is None
    act.forward(data(np.float32, 8))
    assert (type(_ufunc_closure(act.forward).f32) is np.ufunc) is ufunc
    monkeypatch.setattr(_dispatch.SerialUfuncs, "WARM_CALLS", 1)  # every call below
    for dtype in (np.float32, np.float64):
        x = data(dtype, 61)
        ref = act.forward(x, target="parallel")
        cases = {
            "1-d": x,
            "2-d": x[:60].reshape(6, 10),
            "F order": np.asfortranarray(x[:60].reshape(6, 10)),
            "0-d": np.array(x[3]),
            "empty": x[:0],
            "metadata": x.view(np.dtype(dtype, metadata={"unit": "V"})),
            "swapped": x.astype(np.dtype(dtype).newbyteorder()),
        }
        for what, a in cases.items():
            want = act.forward(np.ascontiguousarray(a, dtype), target="parallel")
            got = act.forward(a)
            np.testing.assert_array_equal(got, want, err_msg=what)
            assert np.ndim(got) == a.ndim and np.asarray(got).dtype == dtype, what
            if a.ndim == 0:
                assert not isinstance(got, np.ndarray), what
            g = act.grad(a)
            np.testing.assert_array_equal(g, act.grad(np.ascontiguousarray(a, dtype),
                                                      target="parallel"), err_msg=what)
            if a.dtype.isnative:
                b = a.copy()
                assert act.forward_(b) is b
                np.testing.assert_array_equal(b, want, err_msg=what)
                c = a.copy()
                assert act.forward(c, out=c) is c
                np.testing.assert_array_equal(c, want, err_msg=what)
                o = np.empty_like(a)
                assert act.forward(a, out=o) is o
                np.testing.assert_array_equal(o, want, err_msg=what)
            _check_backward_paths(act, a, dtype, what)
        # grad and x of one size but other shapes: broadcast as the general path does (an
        # outer product), or refused with its message
        gc, xr = x[:5].reshape(5, 1), x[-5:].reshape(1, 5)  # (x ends with special values)
        want = act.backward(gc, xr, target="parallel")
        assert want.shape == (5, 5)
        for target in ("auto", "cpu"):
            np.testing.assert_array_equal(act.backward(gc, xr, target=target), want)
        with pytest.raises(ValueError, match="do not broadcast"):
            act.backward(x[:6].reshape(2, 3), x[:6].reshape(3, 2))
        np.testing.assert_array_equal(act.forward(x[::2]), ref[::2])
        base = data(dtype, 62)  # overlapping out and input: as on copies (NumPy's rule)
        want = act.forward(base[:-1].copy(), target="parallel")
        np.testing.assert_array_equal(act.forward(base[:-1], out=base[1:]), want)
        for shift in (1, -1):  # more than a block (64): x read after g's writes if shifted
            base = data(dtype, 301)
            g, xs = (base[1:], base[:-1]) if shift > 0 else (base[:-1], base[1:])
            want = act.backward(g.copy(), xs.copy(), target="parallel")
            np.testing.assert_array_equal(act.backward(g, xs, out=g), want)
        # into an out that overlaps g or x by a shift (the flat kernels refuse it, and the
        # general path copies), or that is x itself, on one thread and on the parallel loop
        for target in ("auto", "parallel"):
            base = data(dtype, 400)  # (400 + the special values)
            g, xs = base[:300].copy(), base[100:400]
            want = act.backward(g, xs.copy())
            for lo in (99, 101):  # out starts before x, after x
                buf = base.copy()
                o = buf[lo : lo + 300]
                assert act.backward(g, buf[100:400], out=o, target=target) is o
                np.testing.assert_array_equal(o, want, err_msg=f"out over x, {target}")
                gb = np.concatenate([g[:100], g, g[:100]])  # g at gb[100:400]
                o = gb[lo : lo + 300]
                assert act.backward(gb[100:400], xs, out=o, target=target) is o
                np.testing.assert_array_equal(o, want, err_msg=f"out over g, {target}")
            xo = xs.copy()
            assert act.backward(g, xo, out=xo, target=target) is xo
            np.testing.assert_array_equal(xo, want, err_msg=f"out is x, {target}")
            want = act.forward(base[1:].copy())
            buf = base.copy()
            np.testing.assert_array_equal(act.forward(buf[1:], out=buf[:-1], target=target),
                                          want, err_msg=f"forward, out before x, {target}")
        with pytest.raises(ValueError, match="read-only"):
            gro = data(dtype, 61)
            gro.flags.writeable = False
            act.backward(gro, x, out=gro)
        ro = x.copy()
        ro.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            act.forward_(ro)
        with pytest.raises(ValueError, match="read-only"):
            act.forward(ro, out=ro)
        np.testing.assert_array_equal(act.forward(ro), ref)


def test_every_pass_has_a_threshold_on_every_kind_of_cpu():
    """family_for: the registry's family, or of a (forward, backward) pair the pass's; each
    names a threshold of every CPU's table for its pass."""
    from fastact import _dispatch as D

    tables = (D._AVX512_ZEN_THRESHOLDS, D._AVX512_INTEL_THRESHOLDS, D._AVX2_THRESHOLDS)
    for act in fastact.ACTIVATIONS.values():
        for backward in (False, True):
            fam = act.family_for(backward)
            own = act.family
            assert fam == (own if isinstance(own, str) else own[backward]), act.name
            for table in tables:
                assert fam in table[backward], (act.name, fam, backward)
    assert fastact.ACTIVATIONS["gelu"].family_for() == "heaviest"
    assert fastact.ACTIVATIONS["hardswish"].family_for() == "affine"


def test_auto_takes_the_parallel_loop_from_the_threshold_of_its_family_and_pass(monkeypatch):
    """target="auto": one thread below the measured threshold, the parallel loop from it on;
    the backward pass (three arrays) has its own, lower thresholds where memory dominates."""
    import numba

    from fastact import _dispatch as D

    if numba.get_num_threads() < 2:
        pytest.skip("one Numba thread: target='auto' never takes the parallel loop here")
    for fam, n in D.PARALLEL_THRESHOLD.items():
        assert D.choose_cpu_target("auto", n - 1, fam) is False
        assert D.choose_cpu_target("auto", n, fam) is True
    for fam, n in D.BACKWARD_THRESHOLD.items():
        assert D.choose_cpu_target("auto", n - 1, fam, backward=True) is False
        assert D.choose_cpu_target("auto", n, fam, backward=True) is True
    # relu at a size between its two thresholds: forward on one thread, backward parallel
    n = D.BACKWARD_THRESHOLD["linear"]
    assert n < D.PARALLEL_THRESHOLD["linear"]
    x = data(np.float32, n - len(SPECIAL))
    want_g = fastact.relu_backward(np.ones_like(x), x, target="cpu")
    want_y = fastact.relu(x, target="cpu")
    seen = []
    entry = D._entry

    def spy(fn, nin, dt, parallel, inplace, arrays, tp):
        seen.append((nin, parallel))
        return entry(fn, nin, dt, parallel, inplace, arrays, tp)

    monkeypatch.setattr(D, "_entry", spy)
    g = np.ones_like(x)
    fastact.relu_backward(g, x, out=g)
    np.testing.assert_array_equal(g, want_g)
    assert seen == [(2, True)]
    y = x.copy()
    fastact.relu_(y)  # below the forward threshold: one thread (the serial ufunc, once warm)
    assert seen in ([(2, True)], [(2, True), (1, False)])
    np.testing.assert_array_equal(y, want_y)
