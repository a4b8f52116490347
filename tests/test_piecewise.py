"""The tables near the origin (``fastact._piecewise``) and the kernels that use them.

- Each table is accurate on [0, 7.875): xphi (a·Φ(-a)) within 2.5 ULP; phid
  (Φ(-a) - aφ(a)) within 2.5 ULP too, except around its zero at a = 0.75, where SPEC §4's
  4 eps absolute applies (0.13 eps measured); log1pexp (log(1 + e^-a)) within 1.5 ULP;
  xmtanh3 ((a - tanh a)/a³) within 1.5 ULP; tanh2 (tanh²(a)/a²) within 1.5 ULP; sech2
  (sech²a = 1 - tanh²a) within 2 ULP (1.77 measured); tanh
  within 2 ULP (1.9 at the start of piece 1, where the first two terms cancel) on every
  a >= 0 (its table runs to 9.125 and holds 1 beyond), NaN giving NaN; siluq
  (silu'(-a)) within 2.5 ULP, 4 eps absolute around its zero at a = 1.28. The signed
  table mishd (mish'(x), pieces of width 1/2) on (-7.875, 7.875) within 2 ULP (1.55
  measured), 4 eps absolute around its zero at x = -1.19 (0.29 eps measured).
- The block evaluation (vpermt2ps on AVX-512, else a loop) gives the scalar one's bits.
- A formula with a table (tanh, tanh', gelu, gelu', softplus, log_sigmoid, tanhshrink,
  tanhshrink', silu', mish') gives every element the same value whatever the rest of its
  block holds: a block with a value beyond the tables (or NaN) takes the general path for
  all its elements, the same arithmetic element by element.
"""

from __future__ import annotations

import os
import platform

import numpy as np
import pytest
import scipy.special as sc
from _vmath_ulp import ulp32
from numba import njit

import fastact
from fastact import _cpu, _piecewise
from fastact import _vmath as vm

_NEAR = np.float32(vm.NEAR)


def _points(signed=False):
    """Every piece's edges and centre with their float32 neighbours, and a dense grid."""
    pieces = _piecewise.HALF if signed else _piecewise.PIECES
    special = np.array(
        [v for j in range(pieces) for v in _piecewise.piece_bounds(j, signed)], np.float32
    )
    near = np.concatenate([np.nextafter(special, 0), special, np.nextafter(special, 10)])
    grid = np.linspace(0, _NEAR, 400_001, dtype=np.float32)
    a = np.concatenate([grid, near, [np.nextafter(_NEAR, 0), 1e-30, 1e-45]]).astype(np.float32)
    return np.sort(a[a < _NEAR])


@njit(error_model="numpy", fastmath={"contract"})
def _scalar_all(a):
    p = np.empty_like(a)
    u = np.empty_like(a)
    v = np.empty_like(a)
    w = np.empty_like(a)
    q = np.empty_like(a)
    s = np.empty_like(a)
    t = np.empty_like(a)
    h = np.empty_like(a)
    for i in range(a.size):
        p[i] = vm.xphi_near(a[i])
        u[i] = vm.phid_near(a[i])
        v[i] = vm.log1pexp_near(a[i])
        w[i] = vm.xmtanh3_near(a[i])
        q[i] = vm.siluq_near(a[i])
        s[i] = vm.tanh2_near(a[i])
        t[i] = vm.tanh_table(a[i])
        h[i] = vm.sech2_near(a[i])
    return p, u, v, w, q, s, t, h


@njit(error_model="numpy", fastmath={"contract"})
def _scalar_signed(x):
    d = np.empty_like(x)
    for i in range(x.size):
        d[i] = vm.mishd_near(x[i])
    return d


def test_signed_table_accuracy():
    a = _points(signed=True)
    x = np.concatenate([-a[::-1], a])  # -0.0 and 0.0 both
    d = _scalar_signed(x)
    xd = x.astype(np.float64)
    p = np.tanh(np.log1p(np.exp(xd)))
    ref = p + xd * sc.expit(xd) * (1 - p * p)
    err = ulp32(d, ref)
    band = (xd >= -2) & (xd <= -0.5)  # SPEC §4: 4 eps absolute around the zero of mish'
    assert np.abs(d - ref)[band].max() <= 4 * 2.0**-23
    assert err[~band].max() <= 2, x[~band][np.argmax(err[~band])]


def test_tables_accuracy():
    a = _points()
    p, u, v, w, q, s, t, h = _scalar_all(a)
    ad = a.astype(np.float64)
    upper = 0.5 * sc.erfc(ad / np.sqrt(2))
    err = ulp32(p, ad * upper)
    assert err.max() <= 2.5, a[np.argmax(err)]
    ref = upper - ad * np.exp(-0.5 * ad * ad) / np.sqrt(2 * np.pi)
    err = ulp32(u, ref)
    band = (ad >= 0.5) & (ad <= 2)  # SPEC §4: 4 eps absolute around the zero of gelu'
    assert np.abs(u - ref)[band].max() <= 4 * 2.0**-23
    assert err[~band].max() <= 2.5, a[~band][np.argmax(err[~band])]
    err = ulp32(v, np.log1p(np.exp(-ad)))
    assert err.max() <= 1.5, a[np.argmax(err)]
    g = np.array([vm._xmtanh64(t) / t**3 if t else 1 / 3 for t in ad.tolist()])
    err = ulp32(w, g)
    assert err.max() <= 1.5, a[np.argmax(err)]
    ref = (1 - ad * sc.expit(ad)) * sc.expit(-ad)
    err = ulp32(q, ref)
    band = (ad >= 0.5) & (ad <= 2)
    assert np.abs(q - ref)[band].max() <= 4 * 2.0**-23
    assert err[~band].max() <= 2.5, a[~band][np.argmax(err[~band])]
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = np.where(ad > 0, (np.tanh(ad) / ad) ** 2, 1.0)
    err = ulp32(s, ref)
    assert err.max() <= 1.5, a[np.argmax(err)]
    err = ulp32(t, np.tanh(ad))
    assert err.max() <= 2, a[np.argmax(err)]
    err = ulp32(h, 1 / np.cosh(ad) ** 2)
    assert err.max() <= 2, a[np.argmax(err)]


def test_full_range_table_covers_every_float32():
    """tanh's table (a top at 9.125) beyond NEAR: within 1 ULP up to the top, exactly 1
    from there to inf, NaN for NaN, and the block evaluation gives the scalar's bits."""
    top = np.float32(vm.TANH.top)
    beyond = np.linspace(_NEAR, 12, 200_001, dtype=np.float32)
    edges = np.array([top, np.nextafter(top, 0), np.nextafter(top, 20), 20, 1e30, np.inf,
                      np.nan], np.float32)
    a = np.concatenate([beyond, edges])
    a = np.concatenate([a, np.zeros(-a.size % 64, np.float32)])
    t = _scalar_all(a)[_TABLES.index("TANH")]
    ok = ~np.isnan(a)
    err = ulp32(t[ok], np.tanh(a[ok].astype(np.float64)))
    assert err.max() <= 1, a[ok][np.argmax(err)]
    assert (t[ok & (a >= top)] == 1).all() and np.isnan(t[~ok]).all()
    np.testing.assert_array_equal(_blocks(vm.TANH)(a), t)


def _blocks(table):
    ev = _piecewise.block_eval(table, _cpu.BLOCK)

    @njit(error_model="numpy", fastmath={"contract"})
    def run(x):
        out = np.empty_like(x)
        for b in range(x.size // 64):
            ev(x[b * 64 : (b + 1) * 64], out[b * 64 : (b + 1) * 64])
        return out

    return run


_TABLES = ["XPHI", "PHID", "LOG1PEXP", "XMTANH3", "SILUQ", "TANH2", "TANH", "SECH2"]


@pytest.mark.parametrize("name", _TABLES + ["MISHD"])
def test_block_evaluation_is_the_scalar_one_bit_for_bit(name):
    a = _points(signed=name == "MISHD")
    a = np.concatenate([a, np.zeros(-a.size % 64, np.float32)])
    x = np.where(np.arange(a.size) % 3 == 0, -a, a).astype(np.float32)  # -0.0 among them
    got = _blocks(getattr(vm, name))(x)
    if name == "MISHD":  # signed: takes x
        want = _scalar_signed(x)
    else:  # takes |x|
        want = _scalar_all(a)[_TABLES.index(name)]
    np.testing.assert_array_equal(got, want)


def test_float64_block_evaluation_does_nothing():
    """float64 has no tables (``near`` is False): the block evaluation writes nothing."""
    x = np.linspace(-1, 1, 64)
    out = np.full_like(x, 7.0)
    ev = _piecewise.block_eval(vm.XPHI, 64)

    @njit
    def run(x, out):
        ev(x, out)

    run(x, out)
    assert (out == 7.0).all()


_SPLIT = [
    ("tanh", lambda x, t, out=None: fastact.tanh(x, target=t, out=out)),
    ("tanh_backward", lambda x, t, out=None: fastact.tanh_backward(
        np.full_like(x, 0.75), x, target=t, out=out)),
    ("gelu", lambda x, t, out=None: fastact.gelu(x, target=t, out=out)),
    ("gelu_grad", lambda x, t, out=None: fastact.gelu_grad(x, target=t, out=out)),
    ("gelu_backward", lambda x, t, out=None: fastact.gelu_backward(
        np.full_like(x, 0.75), x, target=t, out=out)),
    ("softplus", lambda x, t, out=None: fastact.softplus(x, target=t, out=out, beta=0.75)),
    ("log_sigmoid", lambda x, t, out=None: fastact.log_sigmoid(x, target=t, out=out)),
    ("tanhshrink", lambda x, t, out=None: fastact.tanhshrink(x, target=t, out=out)),
    ("tanhshrink_grad", lambda x, t, out=None: fastact.tanhshrink_grad(x, target=t, out=out)),
    ("silu_backward", lambda x, t, out=None: fastact.silu_backward(
        np.full_like(x, 0.75), x, target=t, out=out)),
    ("mish_backward", lambda x, t, out=None: fastact.mish_backward(
        np.full_like(x, 0.75), x, target=t, out=out)),
]  # fmt: skip


@pytest.mark.parametrize("target", ["cpu", "parallel"])
@pytest.mark.parametrize("name,call", _SPLIT, ids=[n for n, _ in _SPLIT])
def test_a_far_neighbour_changes_no_other_result(name, call, target):
    rng = np.random.default_rng(5)
    x = rng.uniform(-7.8, 7.8, 64 * 40 + 17).astype(np.float32)  # all near, a tail block
    x[::5] *= np.float32(0.5)
    base = call(x, target)
    for far in (np.float32(9.0), np.float32(-30.0), np.float32(np.nan), np.float32(-np.inf)):
        for pos in (3, 64 * 7 + 63, x.size - 2):
            y = x.copy()
            y[pos] = far
            got = call(y, target)
            keep = np.arange(x.size) != pos
            np.testing.assert_array_equal(got[keep], base[keep])
            inplace = y.copy() if not name.endswith("_backward") else None
            if inplace is not None:
                call(inplace, target, out=inplace)
                np.testing.assert_array_equal(inplace, got)


def _split_formulas(dtype):
    """(label, formula, parameters) for every formula written as a ``Split`` (a table, a
    near formula, or a far part computed a pass at a time): forward and grad of each
    activation (variant), with its default parameters."""
    for act in fastact.ACTIVATIONS.values():
        variants = act.variants.items() if act.variant else [(None, act.formulas)]
        params = tuple(dtype(act.params[k]) for k in act.float_params)
        for choice, forms in variants:
            for kind in ("f", "grad"):
                fn = getattr(forms, kind)
                split = getattr(fn, "split", None)
                if split is None:
                    continue
                tabled = _cpu._is_table(split.near_part)
                if dtype == np.float64 and tabled and not hasattr(split.far, "passes"):
                    continue  # (no table: one scalar function, as the ufunc's)
                yield f"{act.name}[{choice}] {kind}", fn, params


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_ufunc_gives_the_kernels_bits(dtype):
    """The scalar formula, element by element (the @vectorize ufunc, which strided and
    broadcast calls and CUDA run), gives the contiguous kernel's bits, table and passes, for
    every formula written as a Split; over the tables' range, beyond it, into the underflow
    and overflow of exp, and at the special values."""
    rng = np.random.default_rng(6)
    tiny = np.ldexp(rng.uniform(-1, 1, 256), -rng.integers(0, 140, 256))
    special = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 88.7, -88.7, 103.9, -103.9,
               7.875, -7.875]
    x = np.concatenate([
        rng.uniform(-8, 8, 2 * 2048), rng.uniform(-800, 800, 2 * 512),
        rng.standard_normal(2 * 512) * 30, tiny, special,
    ]).astype(dtype)
    x = rng.permutation(x)
    cases = list(_split_formulas(dtype))
    assert cases
    for label, fn, params in cases:
        scalar = _cpu.ufunc(fn, 1, len(params), np.dtype(dtype))
        kernel = _cpu.flat_kernel(fn, 1, False)
        got = np.empty_like(x)
        with np.errstate(all="ignore"):
            assert kernel(x, got, *params)
            np.testing.assert_array_equal(got, scalar(x, *params), err_msg=label)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="vpermt2ps is x86-64 assembly")
def test_gelu_kernel_looks_up_in_registers_exactly_with_avx512():
    """The float32 gelu kernel's tables are vpermt2ps lookups when the CPU has AVX-512F and
    FASTACT_NO_AVX512 is unset, and are absent otherwise (the portable child run)."""
    disp = njit(**_cpu._OPTIONS)(_cpu.inplace_kernel(fastact._formulas.gelu, 1, False).py_func)
    disp(np.linspace(-3, 3, 128, dtype=np.float32))
    asm = disp.inspect_asm(disp.signatures[0])
    has = vm._target_has_avx512f()
    want = has and not os.environ.get("FASTACT_NO_AVX512")
    assert ("vpermt2ps" in asm or "vpermi2ps" in asm) == want
