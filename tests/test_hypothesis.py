"""Property-based tests of the whole public API against SPEC §2-§3, driven by the registry.

Hypothesis draws the activation and its parameters (valid and invalid), the dtype (float32,
float64 and refused ones), the shape (0-d, empty, up to 4-d), the view (slices with any
step, negative ones included, and transposes of a larger base), the values (the whole float
range with NaN, ±inf, ±0 and subnormals), ``out`` (the input, another array of another
dtype, a view overlapping the input partially, a wrong one) and the target. Properties:

- any view gives the values the same call gives on a contiguous copy (the reference layout),
  and float32 agrees with float64 on the same values to the accuracy contract's order;
- in place equals out of place and writes nothing outside the view;
- ``out`` follows NumPy: cast to its dtype, and a partial overlap with an input gives what
  no overlap gives;
- ``target="cpu"`` and ``"parallel"`` agree bitwise;
- every error is the documented type and leaves every buffer (input, out, grad and their
  bases) bit for bit as it was.

Profiles (``tests/conftest.py``): ``ci`` by default, ``--hypothesis-profile=long`` for a
long run.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, note
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastact
from fastact import _cuda

ACTS = list(fastact.ACTIVATIONS.values())
FLOATS = [np.dtype(np.float32), np.dtype(np.float64)]
REFUSED_INPLACE = ["i1", "i4", "i8", "u2", "?", "c8", "c16", "O", "f2"]
TARGETS = ["cpu", "parallel", "auto"]


# The formulas once gave NaN (silu, mish) and -inf (silu') at the most negative finite
# floats; test_most_negative_finite_inputs keeps those cases pinned.
EXTREME_CASES = [("mish", "forward"), ("mish", "grad"), ("silu", "forward"), ("silu", "grad")]


# ------------------------------------------------------------------ strategies
def floats_of(dtype):
    return st.floats(width=np.dtype(dtype).itemsize * 8)  # NaN, ±inf, ±0, subnormals


@st.composite
def views(draw, dtype=None, shape=None):
    """An array of ``dtype`` (drawn if None): a view of a larger base, sliced with any step
    and maybe transposed; with ``shape``, exactly that shape. Returns (view, base, make):
    ``make(a)`` takes the same view of any array shaped like the base."""
    dtype = draw(st.sampled_from(FLOATS)) if dtype is None else np.dtype(dtype)
    if shape is None:
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))
    perm = draw(st.permutations(range(len(shape)))) if len(shape) > 1 else list(range(len(shape)))
    pre = tuple(shape[p] for p in np.argsort(perm))  # shape before the transpose
    steps = [draw(st.sampled_from([1, 1, 2, -1, -2])) for _ in pre]
    starts = [draw(st.integers(0, 2)) for _ in pre]
    bshape = tuple(s0 + abs(k) * max(n, 1) for s0, n, k in zip(starts, pre, steps))
    base = draw(hnp.arrays(dtype, bshape, elements=floats_of(dtype)))
    idx = []
    for s0, n, k in zip(starts, pre, steps):
        if k > 0 or n == 0:
            idx.append(slice(s0, s0 + k * n, k) if n else slice(0, 0, k))
        else:
            first = s0 + abs(k) * n - 1
            idx.append(slice(first, (first + k * n) if first + k * n >= 0 else None, k))

    def make(a):
        a = a[tuple(idx)] if idx else a[...]  # a 0-d view, not a scalar
        return a.transpose(perm) if len(shape) > 1 else a

    v = make(base)
    assert v.shape == tuple(shape), (v.shape, shape)
    return v, base, make


def _moderate():
    return st.one_of(
        st.floats(-4, 4, allow_subnormal=False),
        st.sampled_from([0.0, -0.0, 0.5, 1.0, 2.0, 10.0, 20.0, -1.0]),
    )


@st.composite
def params(draw, act, hostile=False):
    """Keyword parameters for ``act``: the defaults, moderate values, or (hostile) anything
    (NaN, ±inf, huge, non-numbers)."""
    kw = {}
    for k, default in act.params.items():
        if k == act.variant:
            choices = list(act.variants)
            kw[k] = draw(st.sampled_from(choices + (["erf", "", None, 1] if hostile else [])))
            continue
        value = st.one_of(st.just(default), _moderate())
        if hostile:
            value = st.one_of(
                value, st.floats(), st.sampled_from(["1", None, True, 1 + 1j, [1.0]])
            )
        if draw(st.booleans()):
            kw[k] = draw(value)
    return kw


def spec_valid(act, kw, from_y=False) -> bool:
    """SPEC §1/§2's rules for parameters, written independently of the registry."""
    p = {**act.params, **kw}
    if act.variant:
        if not isinstance(p[act.variant], str) or p[act.variant] not in ("none", "tanh"):
            return False
    for k, v in p.items():
        if k == act.variant:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
            return False
    n = act.name
    if n == "leaky_relu":
        return math.isfinite(p["negative_slope"]) and (not from_y or p["negative_slope"] >= 0)
    if n == "elu":
        return math.isfinite(p["alpha"]) and (not from_y or p["alpha"] >= 0)
    if n == "celu":
        return math.isfinite(p["alpha"]) and p["alpha"] > 0
    if n == "softplus":
        return math.isfinite(p["beta"]) and p["beta"] > 0
    if n == "hardtanh":
        return p["min_val"] <= p["max_val"]
    if n in ("softshrink", "hardshrink"):
        return math.isfinite(p["lambd"]) and p["lambd"] >= 0
    return True


def call(act, kind, x, kw, g=None, **extra):
    if kind == "forward":
        return act.forward(x, **kw, **extra)
    if kind == "grad":
        return act.grad(x, **kw, **extra)
    if kind == "backward":
        return act.backward(g, x, **kw, **extra)
    return act.backward(g, y=x, **kw, **extra)  # "backward_y"


def kinds(act):
    return ["forward", "grad", "backward"] + (["backward_y"] if act.from_output else [])


@st.composite
def setups(draw, hostile=False):
    """(act, kind, params) with parameters valid for that kind."""
    act = draw(st.sampled_from(ACTS))
    kind = draw(st.sampled_from(kinds(act)))
    kw = draw(params(act, hostile))
    if not hostile:
        assume(spec_valid(act, kw, from_y=kind == "backward_y"))
    note(f"{act.name} {kind} {kw}")
    return act, kind, kw


def same(a, b) -> None:
    """Equal values, NaN where NaN, and the same sign of zero."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
    np.testing.assert_array_equal(a, b)
    if a.dtype.kind == "f":
        np.testing.assert_array_equal(np.signbit(a[a == 0]), np.signbit(b[b == 0]))


def close(a, b, g=None) -> None:
    """Equal up to the accuracy contract (a few ULP): the same dtype and shape, NaN where
    NaN, the same infinities, finite values within 8 eps relative (plus 8 eps·(1 + |grad|)
    absolute, for a derivative near its zero). Strided views run the ufunc loop and
    contiguous arrays the SIMD loop, whose FMA contractions may differ by an ULP."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
    if a.dtype.kind == "c":
        close(a.real, b.real, g)
        close(a.imag, b.imag, g)
        return
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    inf = np.isinf(a) | np.isinf(b)
    np.testing.assert_array_equal(a[inf], b[inf])
    fin = ~(inf | np.isnan(a))
    eps = np.finfo(a.dtype).eps
    scale = 1.0
    if g is not None:
        gabs = np.abs(np.broadcast_to(g, a.shape)[fin]).astype(float)
        scale = 1.0 + np.nan_to_num(gabs, nan=0.0)
    with np.errstate(all="ignore"):
        a64, b64 = a[fin].astype(float), b[fin].astype(float)
        tol = 8 * eps * (np.abs(a64) + np.abs(b64) + scale)
        bad = ~(np.abs(a64 - b64) <= tol)
    assert not bad.any(), (a64[bad][:5], b64[bad][:5])


def bits(*arrays) -> list[bytes]:
    return [np.ascontiguousarray(a).tobytes() for a in arrays]


# ------------------------------------------------------------------ values
@given(st.data())
def test_any_view_and_target_matches_the_contiguous_reference(data):
    act, kind, kw = data.draw(setups())
    x, base, _ = data.draw(views())
    g = data.draw(views(x.dtype, x.shape))[0] if kind.startswith("backward") else None
    target = data.draw(st.sampled_from(TARGETS))
    before = bits(base, x) + ([] if g is None else bits(g))
    res = call(act, kind, x, kw, g, target=target)
    assert bits(base, x) + ([] if g is None else bits(g)) == before  # inputs untouched
    gc = None if g is None else g.copy(order="C")
    ref = call(act, kind, x.copy(order="C"), kw, gc, target="cpu")
    if x.ndim == 0:
        assert not isinstance(res, np.ndarray) and np.shape(res) == ()
    close(res, ref, g)
    assert np.asarray(res).dtype == x.dtype


@given(st.data())
def test_float32_agrees_with_float64(data):
    """float32 results against float64 ones on the same values (parameters rounded to
    float32 first), to the order of the accuracy contract (the ULP bounds themselves are
    test_accuracy's): NaN where NaN, ±inf where ±inf, close elsewhere."""
    act, kind, kw = data.draw(setups())
    assume(kind in ("forward", "grad"))
    x32 = data.draw(views(np.float32))[0]
    kw32 = {k: float(np.float32(v)) if isinstance(v, float) else v for k, v in kw.items()}
    assume(spec_valid(act, kw32))  # (beta=1e-60 is valid, but 0 in float32)
    r32 = call(act, kind, x32, kw32)
    r64 = np.asarray(call(act, kind, x32.astype(np.float64), kw32)).astype(np.float32)
    r32 = np.asarray(r32)
    np.testing.assert_array_equal(np.isnan(r32), np.isnan(r64))
    # 4 eps absolute: the SPEC's allowance near a derivative's interior zero; 1e-4 relative:
    # gelu(approximate="tanh") beyond |x| = 2
    np.testing.assert_allclose(r32, r64, rtol=1e-4, atol=4 * 2**-23 if kind == "grad" else 1e-44)


@given(st.data())
def test_finite_inputs_never_give_nan(data):
    """SPEC §3: NaN out only for NaN in; every activation is defined on all of R."""
    act, kind, kw = data.draw(setups())
    assume(kind in ("forward", "grad", "backward"))
    dtype = data.draw(st.sampled_from(FLOATS))
    x = data.draw(hnp.arrays(dtype, data.draw(st.integers(1, 30)),
                             elements=st.floats(width=dtype.itemsize * 8, allow_nan=False,
                                                allow_infinity=False)))  # fmt: skip
    g = np.ones_like(x) if kind == "backward" else None
    res = np.asarray(call(act, kind, x, kw, g))
    assert not np.isnan(res).any(), x[np.isnan(res)]


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("name,kind", EXTREME_CASES)
def test_most_negative_finite_inputs(name, kind, dtype):
    act = fastact.ACTIVATIONS[name]
    x = np.array([np.finfo(dtype).min, np.finfo(dtype).min * 0.9], dtype)
    res = call(act, kind, x, {})
    assert np.all(np.abs(res) <= 1), res  # the limits are -0 (f) and 0 (f')


# ------------------------------------------------------------------ in place and out=
@given(st.data())
def test_in_place_equals_out_of_place_through_views(data):
    """In place through a view: the view holds the out-of-place result and nothing else in
    its base changed (nor in the other input's base)."""
    act, kind, kw = data.draw(setups())
    x, base, make = data.draw(views())
    target = data.draw(st.sampled_from(TARGETS))
    gscale = None
    if kind == "forward":
        want = act.forward(x.copy(), **kw, target="cpu")
        expect = base.copy()
        assert act.forward_(x, **kw, target=target) is x
    elif kind == "grad":
        want = act.grad(x.copy(), **kw, target="cpu")
        expect = base.copy()
        assert act.grad(x, **kw, out=x, target=target) is x
    else:  # backward into grad, grad a view of its own base
        g, gbase, gmake = data.draw(views(x.dtype, x.shape))
        gscale = g.copy()
        want = call(act, kind, x.copy(), kw, g.copy(), target="cpu")
        xbits = bits(base)
        expect = gbase.copy()
        assert call(act, kind, x, kw, g, out=g, target=target) is g
        assert bits(base) == xbits
        x, base, make = g, gbase, gmake
    close(x, want, gscale)
    make(expect)[...] = x  # and nothing else in the base changed
    assert bits(base) == bits(expect)


@given(st.data())
def test_out_of_another_dtype_and_layout(data):
    act, kind, kw = data.draw(setups())
    x, _, _ = data.draw(views())
    g = data.draw(views(x.dtype, x.shape))[0] if kind.startswith("backward") else None
    odt = data.draw(st.sampled_from(["f2", "f4", "f8", "c8", "c16"]))
    out = data.draw(views(np.float64, x.shape))[0]
    if odt != "f8":
        out = np.empty_like(out, dtype=odt)
    res = call(act, kind, x, kw, g, out=out, target=data.draw(st.sampled_from(TARGETS)))
    assert res is out
    want = np.asarray(call(act, kind, x.copy(), kw, None if g is None else g.copy()))
    with np.errstate(all="ignore"):
        close(out, want.astype(out.dtype), g)


@given(st.data())
def test_partial_overlap_of_out_and_inputs_is_as_without_overlap(data):
    """``out`` overlapping an input partially (e.g. out=x[1:] for x[:-1], any step, either
    direction): the result of no overlap (NumPy's rule), and nothing else written."""
    act, kind, kw = data.draw(setups())
    dtype = data.draw(st.sampled_from(FLOATS))
    n = data.draw(st.integers(2, 40))
    shift = data.draw(st.integers(1, min(3, n - 1))) * data.draw(st.sampled_from([1, -1]))
    step = data.draw(st.sampled_from([1, -1, 2, -2]))
    a = abs(step)
    base = data.draw(hnp.arrays(dtype, (n + 8) * a, elements=floats_of(dtype)))

    def view(arr, off):
        v = arr[(4 + off) * a : (4 + off + n) * a : a]
        return v[::-1] if step < 0 else v

    x, out = view(base, 0), view(base, shift)
    assert np.shares_memory(x, out) and not np.shares_memory(x[: abs(shift)], x[abs(shift):])
    g = None
    if kind.startswith("backward"):
        other = data.draw(hnp.arrays(dtype, n, elements=floats_of(dtype)))
        if data.draw(st.booleans()):  # the gradient overlaps out, not x
            g, x = x, other
        else:
            g = other
    want = np.asarray(call(act, kind, x.copy(), kw, None if g is None else g.copy()))
    expect = base.copy()
    gscale = None if g is None else g.copy()
    assert call(act, kind, x, kw, g, out=out, target=data.draw(st.sampled_from(TARGETS))) is out
    close(out, want, gscale)
    view(expect, shift)[...] = out
    assert bits(base) == bits(expect)


@given(st.data())
def test_cpu_and_parallel_agree_bitwise(data):
    act, kind, kw = data.draw(setups())
    x, _, _ = data.draw(views())
    if data.draw(st.booleans()):  # large enough that the parallel loop really splits
        x = np.resize(x.copy(order="C").ravel(), 5000) if x.size else x
    g = None
    if kind.startswith("backward"):
        g = data.draw(hnp.arrays(x.dtype, x.shape, elements=floats_of(x.dtype))) \
            if x.size <= 300 else np.linspace(-3, 3, x.size, dtype=x.dtype)  # fmt: skip
    a = call(act, kind, x, kw, g, target="cpu")
    b = call(act, kind, x, kw, g, target="parallel")
    assert bits(a) == bits(b)


# ------------------------------------------------------------------ errors
class Case:
    def __init__(self, exc, thunk, buffers):
        self.exc, self.thunk, self.buffers = exc, thunk, buffers


@st.composite
def bad_calls(draw):
    act = draw(st.sampled_from(ACTS))
    x, base, _ = draw(views())
    kind = draw(st.sampled_from(kinds(act)))
    g, gbase, _ = draw(views(x.dtype, x.shape))
    bufs = [x, base, g, gbase]
    what = draw(st.sampled_from([
        "param", "dtype_inplace", "read_only", "out_shape", "out_dtype", "out_read_only",
        "out_type", "target", "keyword", "broadcast", "x_and_y", "neither", "y_refused",
        "input_type",
    ]))  # fmt: skip
    note(f"{act.name} {kind} {what}")
    if what == "param":
        kw = draw(params(act, hostile=True))
        assume(not spec_valid(act, kw, from_y=kind == "backward_y"))
        return Case(ValueError, lambda: call(act, kind, x, kw, g), bufs)
    if what == "dtype_inplace":
        dt = draw(st.sampled_from(REFUSED_INPLACE))
        with np.errstate(all="ignore"):
            bad = np.zeros(x.shape, dt) if dt != "O" else np.array(x, dtype=object)
        bufs.append(bad)
        return Case(TypeError, lambda: act.forward_(bad), bufs)
    if what == "read_only":
        ro = x.copy()
        ro.flags.writeable = False
        bufs.append(ro)
        if kind.startswith("backward"):
            return Case(ValueError, lambda: call(act, kind, x, {}, g, out=ro), bufs)
        return Case(ValueError, lambda: act.forward_(ro), bufs)
    if what == "out_shape":
        shp = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
        assume(shp != x.shape)
        out = np.full(shp, 7.0, x.dtype)
        bufs.append(out)
        return Case(ValueError, lambda: call(act, kind, x, {}, g, out=out), bufs)
    if what == "out_dtype":
        out = np.full(x.shape, 7, draw(st.sampled_from(["i4", "i8", "u1", "?"])))
        bufs.append(out)
        return Case(TypeError, lambda: call(act, kind, x, {}, g, out=out), bufs)
    if what == "out_read_only":
        out = np.full(x.shape, 7.0, x.dtype)
        out.flags.writeable = False
        bufs.append(out)
        return Case(ValueError, lambda: call(act, kind, x, {}, g, out=out), bufs)
    if what == "out_type":
        return Case(TypeError, lambda: call(act, kind, x, {}, g, out=x.tolist()), bufs)
    if what == "target":
        t = draw(st.sampled_from(["gpu", "CPU", "", "threads", None]))
        fn = draw(st.sampled_from(["call", "inplace"]))
        if fn == "inplace":
            return Case(ValueError, lambda: act.forward_(x, target=t), bufs)
        return Case(ValueError, lambda: call(act, kind, x, {}, g, target=t), bufs)
    if what == "keyword":
        return Case(TypeError, lambda: act.forward_(x, not_a_param=1.0), bufs)
    if what == "broadcast":
        assume(x.ndim >= 1)
        other = np.ones(x.shape[:-1] + (x.shape[-1] + 2,), x.dtype)
        bufs.append(other)
        return Case(ValueError, lambda: act.backward(other, x, out=g), bufs)
    if what == "x_and_y":
        return Case(ValueError, lambda: act.backward(g, x, y=x, out=g), bufs)
    if what == "neither":
        return Case(ValueError, lambda: act.backward(g, out=g), bufs)
    if what == "y_refused":
        assume(not act.from_output)
        return Case(ValueError, lambda: act.backward(g, y=x, out=g), bufs)
    # input_type: complex, strings, objects, out of place
    bad = draw(st.sampled_from(["c8", "c16", "str", "obj"]))
    arr = {"c8": x.astype(np.complex64), "c16": x.astype(np.complex128),
           "str": np.array(["a", "b"]), "obj": np.array([object()] * 2)}[bad]  # fmt: skip
    return Case(TypeError, lambda: act.forward(arr), bufs)


@given(bad_calls())
def test_errors_are_documented_types_and_leave_buffers_untouched(case):
    before = bits(*case.buffers)
    with pytest.raises(case.exc) as info:
        case.thunk()
    assert "numba" not in str(info.value).lower()
    assert bits(*case.buffers) == before


@pytest.mark.skipif(_cuda.available(), reason="a GPU or the CUDA simulator is present here")
@given(st.sampled_from(ACTS), views())
def test_cuda_target_without_a_gpu_is_a_runtime_error(act, xb):
    x, base, _ = xb
    before = bits(x, base)
    with pytest.raises(RuntimeError):
        act.forward_(x, target="cuda")
    assert bits(x, base) == before


# ------------------------------------------------------------------ non-elementwise
@given(st.data())
def test_softmax_family_views_targets_in_place(data):
    log = data.draw(st.booleans())
    fwd, fwd_ = (fastact.log_softmax, fastact.log_softmax_) if log else (
        fastact.softmax, fastact.softmax_)  # fmt: skip
    x, base, _ = data.draw(views())
    assume(x.ndim >= 1)
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    before = bits(base)
    ref = fwd(x.copy(order="C"), axis=axis, target="cpu")
    for t in TARGETS:
        assert bits(fwd(x, axis=axis, target=t)) == bits(ref)
    assert bits(base) == before
    if np.isfinite(x).all() and x.size:
        xf = x.astype(np.float64)
        z = xf - xf.max(axis=axis, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=axis, keepdims=True))
        want = z - lse if log else np.exp(z - lse)
        tol = 1e-4 if x.dtype == np.float32 else 1e-10
        with np.errstate(all="ignore"):
            np.testing.assert_allclose(ref, want, rtol=tol, atol=tol)
    y = x.copy() if data.draw(st.booleans()) else x
    assert fwd_(y, axis=axis, target=data.draw(st.sampled_from(TARGETS))) is y
    close(y, ref)  # (a strided row may be summed in another order than a contiguous one)
    g = data.draw(views(x.dtype, x.shape))[0]
    bwd = fastact.log_softmax_backward if log else fastact.softmax_backward
    r = bwd(g, ref, axis=axis, target="cpu")
    assert bits(bwd(g, ref, axis=axis, target="parallel")) == bits(r)
    gg = g.copy()
    assert bwd(gg, ref, axis=axis, out=gg) is gg
    close(gg, r, g)


@given(st.data())
def test_maxout_and_prelu_views_targets(data):
    x, base, _ = data.draw(views())
    assume(x.ndim >= 1)
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    n = x.shape[axis]
    pieces = data.draw(st.integers(1, 4))
    if n % pieces:
        before = bits(x, base)
        with pytest.raises(ValueError):
            fastact.maxout(x, pieces, axis=axis)
        assert bits(x, base) == before
    else:
        ref = fastact.maxout(x.copy(order="C"), pieces, axis=axis, target="cpu")
        for t in TARGETS:
            same(fastact.maxout(x, pieces, axis=axis, target=t), ref)
        if x.size:
            xm = np.moveaxis(x, axis, -1)
            want = xm.reshape(xm.shape[:-1] + (n // pieces, pieces)).max(axis=-1)
            # (values as np.max; the sign of a max of +0 and -0 is not specified)
            np.testing.assert_array_equal(np.moveaxis(ref, axis, -1), want)
    channels = x.shape[1] if x.ndim >= 2 else 1
    w = data.draw(hnp.arrays(x.dtype, data.draw(st.sampled_from([1, channels])),
                             elements=st.floats(-3, 3, width=x.dtype.itemsize * 8)))  # fmt: skip
    ref = fastact.prelu(x.copy(order="C"), w, target="cpu")
    for t in TARGETS:
        same(fastact.prelu(x, w, target=t), ref)
    wb = w.reshape((1, -1) + (1,) * (x.ndim - 2)) if x.ndim >= 2 else w
    with np.errstate(all="ignore"):  # prelu(x <= 0) with weight 0 is +0, even at -inf
        want = np.where(x > 0, x, np.where(wb == 0, 0.0, wb * x))
        want = np.where(np.isnan(x), x, want)
    np.testing.assert_array_equal(ref, want.astype(x.dtype))
    y = x.copy()
    assert fastact.prelu_(y, w) is y
    same(y, ref)
