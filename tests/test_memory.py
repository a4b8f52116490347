"""Memory safety: indices past 2^31, and no growth over many calls.

Indices past 2^31 without 8 GiB of RAM. A contiguous array of 2^31 + k elements needs
8 GiB (float32) of written pages, so two checks stand in for it:

- the compiled loops of the flat kernels (serial, parallel, in place) are audited in their
  LLVM IR: the loop index is i64 and nothing narrows an i64 to 32 bits or less;
- the same loop source runs for real over 2^31 + 128 elements of a writable zero-stride view
  of one float64 (``as_strided(..., strides=(0,), writeable=True)``), the kernel called
  directly (the public in-place form follows NumPy and computes an output that overlaps
  itself on a copy, which would allocate 16 GiB). ``softshrink`` with ``lambd=1`` subtracts
  1 per element from that one value, so the value left counts the iterations exactly: a
  32-bit index would run 128 or none.
"""

from __future__ import annotations

import gc
import re
import sys

import numpy as np
import pytest
from numba import njit
from numpy.lib.stride_tricks import as_strided

import fastact
from fastact import _cpu
from fastact import _formulas as F

_KERNELS = {  # name: (factory, formula, parallel, nin)
    "flat_n1_ser": (_cpu.flat_kernel, F.softshrink, False, 1),
    "flat_n1_par": (_cpu.flat_kernel, F.softshrink, True, 1),
    "flat_n2_par": (_cpu.flat_kernel, F.shrink_grad, True, 2),
    "inplace_n1_par": (_cpu.inplace_kernel, F.softshrink, True, 1),
}


@pytest.mark.parametrize("name", list(_KERNELS))  # ids by name: the same in every xdist worker
def test_loop_index_is_64_bit_in_the_ir(name):
    factory, fn, parallel, nin = _KERNELS[name]
    kernel = factory(fn, nin, parallel)
    # compiled afresh: Numba cannot show the IR of a kernel loaded from the disk cache
    disp = getattr(kernel, "dispatcher", kernel)
    fresh = njit(parallel=parallel, **_cpu._OPTIONS)(disp.py_func)
    a = np.linspace(-2, 2, 16)
    nargs = fresh.py_func.__code__.co_argcount
    fresh(*[a.copy() for _ in range(nargs)], 0.5)
    ir = fresh.inspect_llvm(fresh.signatures[0])
    assert re.search(r"phi i64 ", ir), "no 64-bit loop index"
    narrowed = re.findall(r"= trunc i64 [^\n]* to i32\b", ir)  # (i8/i16: memset bytes)
    assert not narrowed, narrowed[:3]


def test_loop_runs_past_2_to_the_31():
    # Every element of this self-aliasing view is buf[0]. A kernel copies each block of x
    # (BLOCK elements) before it writes the block's results, so each block takes 1 off
    # buf[0] (out[i] = softshrink(x[i], 1) = x[i] - 1 for the whole block): buf[0] counts
    # the blocks run. A whole number of blocks, past 2^31 elements (a count or an index
    # truncated to 32 bits would run none, or a few).
    n = 2**31 + 2 * _cpu.BLOCK
    blocks = n // _cpu.BLOCK
    buf = np.array([blocks + 10.0])
    view = as_strided(buf, shape=(n,), strides=(0,), writeable=True)
    assert view.size > 2**31 and view.flags.writeable
    kernel = _cpu.flat_kernel(F.softshrink, 1, False)
    kernel(view, view, 1.0)
    assert buf[0] == 10.0, f"{blocks + 10 - buf[0]:.0f} blocks instead of {blocks}"


# ------------------------------------------------------------------ growth
def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmRSS")


def _ten_calls(x, x32, g, i):
    """Ten calls of every kind, each allocating something the size of x."""
    fastact.sigmoid(x)
    fastact.gelu(x32, approximate="tanh")
    fastact.elu_(x32[::2].copy(), alpha=0.5)
    fastact.tanh_grad(x, target="parallel")
    fastact.softplus_backward(g, y=x)
    fastact.leaky_relu(x, negative_slope=1e-3 * (i % 50), out=np.empty_like(x))
    fastact.relu(x.tolist()[:8])
    fastact.softmax(x.reshape(8, -1))
    try:
        fastact.celu(x, alpha=float("nan"))
    except ValueError:
        pass
    try:
        fastact.relu_(x.astype(np.int32))
    except TypeError:
        pass


def test_no_growth_over_10_000_calls():
    try:
        _rss()
    except OSError:
        pytest.skip("no /proc/self/status VmRSS on this platform")
    rng = np.random.default_rng(0)
    x = rng.uniform(-5, 5, 1024)
    x32 = x.astype(np.float32)
    g = rng.uniform(-1, 1, 1024)
    for i in range(100):  # compile, warm the caches and the allocator
        _ten_calls(x, x32, g, i)
    gc.collect()
    rss, blocks = _rss(), sys.getallocatedblocks()
    for i in range(1000):
        _ten_calls(x, x32, g, i)
    gc.collect()
    grown, more_blocks = _rss() - rss, sys.getallocatedblocks() - blocks
    # leaking one 8 KB array a call would be ~80 MB; one Python object a call, 10^4 blocks
    assert grown < 24 * 2**20, f"RSS grew {grown / 2**20:.1f} MiB over 10^4 calls"
    assert more_blocks < 2000, f"{more_blocks} more Python memory blocks after 10^4 calls"


def test_new_parameter_values_do_not_grow_memory():
    """A parameter that changes every call (a schedule): the caches stay bounded. Three
    batches of 10^4 calls; the caches fill in the first, so the third batch must keep
    nothing more than the second did (a cache entry per call would be >= 3 blocks a call)."""
    x = np.linspace(-2, 2, 64)

    def batch(offset):
        for i in range(5000):
            s = offset + 1e-4 * i
            fastact.leaky_relu(x, negative_slope=s)
            fastact.elu_(x[::2].copy(), alpha=s)
        gc.collect()
        return sys.getallocatedblocks()

    batch(0.0)
    second = batch(10.0)
    grown = batch(20.0) - second
    assert grown < 1000, f"{grown} more memory blocks after 10^4 calls with new parameters"


# ------------------------------------------------------------------ reversed views
REVERSED = {
    "[::-1]": lambda a: a.reshape(-1)[::-1],
    "[0, ::-1]": lambda a: a[0, ::-1],
    "[::-1, ::-1]": lambda a: a[::-1, ::-1],
    "[::-2, ::-1]": lambda a: a[::-2, ::-1],
    "[1:3, ::-1]": lambda a: a[1:3, ::-1],
    "[::-1, :]": lambda a: a[::-1, :],
    ".T[::-1, ::-1]": lambda a: a.T[::-1, ::-1],
}


@pytest.mark.parametrize("view", list(REVERSED))
@pytest.mark.parametrize("target", ["cpu", "parallel"])
def test_in_place_on_reversed_views_writes_exactly_the_view(view, target):
    """Numba's ufunc loop, given an output that is its input reversed (stride -itemsize),
    wrote one element and then past the array, corrupting the heap; fastact flips such
    views to positive strides first."""
    v_of = REVERSED[view]
    for fn in ("binary_step", "relu6", "sigmoid"):
        base = np.linspace(-8, 8, 30).reshape(6, 5)
        expect = base.copy()
        v_of(expect)[...] = getattr(fastact, fn)(v_of(expect).copy(), target="cpu")
        v = v_of(base)
        assert getattr(fastact, fn + "_")(v, target=target) is v
        np.testing.assert_array_equal(base, expect)
        g = np.linspace(-1, 1, 30).reshape(6, 5)
        gv, xv = v_of(g), v_of(base)
        want = getattr(fastact, fn + "_backward")(gv.copy(), xv.copy(), target="cpu")
        assert getattr(fastact, fn + "_backward")(gv, xv, out=gv, target=target) is gv
        np.testing.assert_array_equal(gv, want)


OUTS = {
    "[::2]": lambda a: a[::2],
    "[::-1]": lambda a: a[: a.size // 2][::-1],
    "[::-3]": lambda a: a[::-3],
    "2-d[:, ::2]": lambda a: a.reshape(-1, 6)[:, ::2],
}


@pytest.mark.parametrize("out_view", list(OUTS))
@pytest.mark.parametrize("target", ["cpu", "parallel"])
def test_contiguous_inputs_into_a_strided_out_write_exactly_out(out_view, target):
    """Numba's ufunc loop ignored the output's stride when every input was contiguous:
    out=o[::2] got o[0:n] written, out=o[::-1] was written past its end."""
    ob = np.full(48, np.nan)
    out = OUTS[out_view](ob)
    x = np.linspace(-3, 3, out.size).reshape(out.shape)
    g = np.linspace(1, 2, out.size).reshape(out.shape)
    for call, want in (
        (lambda: fastact.tanh(x, out=out, target=target), np.tanh(x)),
        (lambda: fastact.relu_backward(g, x, out=out, target=target), g * (x > 0)),
    ):
        ob[...] = np.nan
        assert call() is out
        np.testing.assert_allclose(out, want, rtol=1e-15, atol=0)
        assert np.isnan(ob).sum() == ob.size - out.size  # nothing outside out written
