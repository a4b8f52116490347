"""The CUDA kernels of softmax, log_softmax, prelu and maxout (and their backward passes)
without a GPU: numba-cuda's simulator, in a subprocess (as ``test_cuda_sim.py``).

``NUMBA_ENABLE_CUDASIM=1`` must be set before Numba is imported, so one subprocess (this
file run as a script) runs every case on small arrays — several shapes and axes (rows, the
one-thread-per-row column kernel, non-contiguous views), special values, out=, in place,
host arrays with target="cuda", errors — × float32 and float64, and reports each as a JSON
line; the tests below assert one case each, against the CPU result.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
import traceback

import numpy as np
import pytest

# one worker runs this whole module: its module-scoped fixture (a subprocess) runs once
pytestmark = pytest.mark.xdist_group("cuda_nonelementwise_sim")


HAVE_NUMBA_CUDA = importlib.util.find_spec("numba_cuda") is not None
needs_numba_cuda = pytest.mark.skipif(
    not HAVE_NUMBA_CUDA, reason="numba-cuda is not installed (pip install 'fastact[cuda]')"
)

DTYPES = ("float32", "float64")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (shape, axis, view): view "T" transposes the array, "s" takes every other column.
SOFTMAX_LAYOUTS = {
    "rows": ((6, 7), -1, None),  # short rows: several rows per block
    "longrows": ((3, 70), -1, None),  # a whole block per row
    "cols": ((4, 5, 6), 1, None),  # folded (P, n, Q): one thread per row
    "axis0": ((3, 4), 0, None),  # a strided axis, few rows: the segment kernel
    "strided": ((5, 12), -1, "s"),  # a non-contiguous view, n-d indexing
    "transposed": ((6, 9), 0, "T"),  # F-ordered view: rows contiguous along axis 0
    "3d-last": ((2, 3, 10), -1, None),
}


def _close_to(got, ref, dtype, atol=0.0) -> str | None:
    """None if ``got`` matches the CPU result ``ref`` (NaN where it is NaN) to 64 eps
    relative or ``atol``, else why not. The simulator's exp is a NumPy stand-in for
    libdevice, and reductions run in another order, so the last bits may differ."""
    got, ref = np.asarray(got, dtype=dtype), np.asarray(ref, dtype=dtype)
    if got.shape != ref.shape:
        return f"shape {got.shape} != {ref.shape}"
    fi = np.finfo(dtype)
    with np.errstate(invalid="ignore"):
        tol = 64 * fi.eps * np.abs(ref) + 16 * fi.smallest_subnormal + atol
        ok = (got == ref) | (np.isnan(got) & np.isnan(ref)) | (np.abs(got - ref) <= tol)
    if ok.all():
        return None
    i = np.flatnonzero(~ok.ravel())[:3]
    return f"{(~ok).sum()} mismatches, e.g. got {got.ravel()[i]} vs cpu {ref.ravel()[i]}"


def _sum_atol(*arrays, dtype) -> float:
    """Allowance for results that go through a sum: 64 eps times the sum's magnitude."""
    with np.errstate(invalid="ignore", over="ignore"):
        m = max(float(np.nanmax(np.abs(a), initial=0.0, where=np.isfinite(a))) for a in arrays)
    return 64 * float(np.finfo(dtype).eps) * max(1.0, m) ** 2


def _data(shape, dtype, seed=0, special=True) -> np.ndarray:
    """Normal values times 3, with special rows (NaN, +inf, all -inf, -inf beside finite,
    huge values) along the last axis when there are enough rows."""
    rng = np.random.default_rng(seed)
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    if special and x.ndim >= 2 and x.shape[0] >= 3:
        x2 = x.reshape(-1, x.shape[-1])
        x2[0, 1] = np.nan
        x2[1, 0] = np.inf
        x2[2, :] = -np.inf
        if x2.shape[0] > 3:
            x2[3, 0] = -np.inf
        if x2.shape[0] > 4:
            x2[4, :] *= np.finfo(dtype).max / 16
    return x


def _view(a, kind):
    if kind == "T":
        return a.T
    if kind == "s":
        return a[:, ::2]
    return a


def _embed(a, kind, shape):
    """A contiguous array of ``shape`` whose ``_view(., kind)`` equals ``a``."""
    b = np.zeros(shape, a.dtype)
    _view(b, kind)[...] = a
    return b


def _is_device(a) -> bool:
    return getattr(a, "__cuda_ndarray__", False) is True


# --------------------------------------------------------------------- cases
def _softmax_case(layout: str, log: bool):
    shape, axis, vk = SOFTMAX_LAYOUTS[layout]
    name = "log_softmax" if log else "softmax"

    def case(fastact, cuda, dtype):
        fwd, fwd_ = getattr(fastact, name), getattr(fastact, name + "_")
        bwd = getattr(fastact, name + "_backward")
        base = _data(shape if vk != "T" else shape[::-1], dtype)
        x = _view(base, vk)
        ref = fwd(x, axis=axis, target="cpu")
        dbase = cuda.to_device(base)
        dx = _view(dbase, vk)
        r = fwd(dx, axis=axis)
        if not _is_device(r):
            return f"{name} returned a {type(r).__name__}"
        msg = _close_to(r.copy_to_host(), ref, dtype)
        if msg:
            return "forward: " + msg
        o = cuda.device_array(x.shape, dtype)
        if fwd(dx, axis=axis, out=o) is not o:
            return "out= was not returned"
        msg = _close_to(o.copy_to_host(), ref, dtype)
        if msg:
            return "out=: " + msg
        if fwd_(dx, axis=axis) is not dx:
            return "in place did not return x"
        whole = dbase.copy_to_host()
        msg = _close_to(_view(whole, vk), ref, dtype)
        if msg:
            return "in place: " + msg
        if vk == "s" and not np.array_equal(whole[:, 1::2], base[:, 1::2], equal_nan=True):
            return "in place wrote outside the view"
        # backward from y (finite rows), in place into grad
        xf = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
        xf = np.clip(xf, -30, 30).astype(dtype)
        y = fwd(xf, axis=axis, target="cpu")
        g = _data(x.shape, dtype, seed=1, special=False)
        ref_b = bwd(g, y, axis=axis, target="cpu")
        dg = cuda.to_device(g)
        if bwd(dg, cuda.to_device(y), axis=axis, out=dg) is not dg:
            return "backward(out=grad) did not return out"
        msg = _close_to(dg.copy_to_host(), ref_b, dtype, _sum_atol(g, y, dtype=dtype))
        if msg:
            return "backward: " + msg
        # the backward with y a view like x
        rb = bwd(cuda.to_device(g), _view(cuda.to_device(_embed(y, vk, base.shape)), vk), axis=axis)
        return _close_to(rb.copy_to_host(), ref_b, dtype, _sum_atol(g, y, dtype=dtype))

    return case


def _softmax_host_case(log: bool):
    name = "log_softmax" if log else "softmax"

    def case(fastact, cuda, dtype):
        fwd, fwd_ = getattr(fastact, name), getattr(fastact, name + "_")
        x = _data((5, 6), dtype)
        ref = fwd(x, target="cpu")
        r = fwd(x, target="cuda")
        if type(r) is not np.ndarray or r.dtype != dtype:
            return f"host input gave {type(r).__name__}"
        msg = _close_to(r, ref, dtype)
        out = np.zeros((5, 6), dtype)
        if fwd(x, out=out, target="cuda") is not out:
            return "host out= was not returned"
        msg = msg or _close_to(out, ref, dtype)
        big = _data((5, 12), dtype)
        view = big[:, ::2]
        ref_v = fwd(view, axis=0, target="cpu")
        keep = big[:, 1::2].copy()
        if fwd_(view, axis=0, target="cuda") is not view:
            return "host in place did not return x"
        msg = msg or _close_to(view, ref_v, dtype)
        if not np.array_equal(big[:, 1::2], keep, equal_nan=True):
            return "host in place wrote outside the view"
        ints = fwd([[1, 2, 3]], target="cuda")  # lists and ints: float64, as on the CPU
        if ints.dtype != np.float64:
            return f"a list gave {ints.dtype}"
        return msg or _close_to(ints, fwd([[1, 2, 3]], target="cpu"), np.float64)

    return case


def _maxout_case(shape, pieces, axis, vk=None):
    def case(fastact, cuda, dtype):
        base = _data(shape, dtype, special=False)
        flat = base.reshape(-1)
        flat[::7] = np.round(flat[::7])  # ties
        flat[1::7] = flat[::7][: flat[1::7].size]
        flat[5] = np.nan
        flat[11] = np.nan
        x = _view(base, vk)
        ref = fastact.maxout(x, pieces, axis=axis, target="cpu")
        dx = _view(cuda.to_device(base), vk)
        r = fastact.maxout(dx, pieces, axis=axis)
        if not _is_device(r):
            return f"maxout returned a {type(r).__name__}"
        msg = _close_to(r.copy_to_host(), ref, dtype)
        if msg:
            return "forward: " + msg
        o = cuda.device_array(ref.shape, dtype)
        if fastact.maxout(dx, pieces, axis=axis, out=o) is not o:
            return "out= was not returned"
        msg = _close_to(o.copy_to_host(), ref, dtype)
        g = _data(ref.shape, dtype, seed=2, special=False)
        ref_b = fastact.maxout_backward(g, x, pieces, axis=axis, target="cpu")
        rb = fastact.maxout_backward(cuda.to_device(g), dx, pieces, axis=axis)
        msg = msg or _close_to(rb.copy_to_host(), ref_b, dtype)
        # out=x: the gradient overwrites x (each group is read before it is written)
        dx2 = cuda.to_device(np.ascontiguousarray(x))
        if fastact.maxout_backward(cuda.to_device(g), dx2, pieces, axis=axis, out=dx2) is not dx2:
            return "maxout_backward(out=x) did not return out"
        msg = msg or _close_to(dx2.copy_to_host(), ref_b, dtype)
        host = fastact.maxout(x, pieces, axis=axis, target="cuda")
        if type(host) is not np.ndarray:
            return f"host input gave {type(host).__name__}"
        return msg or _close_to(host, ref, dtype)

    return case


def _prelu_case(shape, wsize, vk=None, device_weight=False):
    def case(fastact, cuda, dtype):
        base = _data(shape, dtype, special=False)
        flat = base.reshape(-1)
        flat[:4] = [0.0, -0.0, np.nan, -np.inf]
        x = _view(base, vk)
        w = np.linspace(0.0, 0.5, wsize).astype(dtype) if wsize > 1 else np.array([0.25], dtype)
        wd = cuda.to_device(w) if device_weight else w
        ref = fastact.prelu(x, w, target="cpu")
        dbase = cuda.to_device(base)
        dx = _view(dbase, vk)
        r = fastact.prelu(dx, wd)
        if not _is_device(r):
            return f"prelu returned a {type(r).__name__}"
        msg = _close_to(r.copy_to_host(), ref, dtype)
        if msg:
            return "forward: " + msg
        msg = _close_to(
            fastact.prelu_grad(dx, wd).copy_to_host(), fastact.prelu_grad(x, w, target="cpu"), dtype
        )
        if msg:
            return "grad: " + msg
        g = _data(x.shape, dtype, seed=3, special=False)
        gx_ref, gw_ref = fastact.prelu_backward(g, x, w, target="cpu")
        gx, gw = fastact.prelu_backward(cuda.to_device(g), dx, wd)
        if not (_is_device(gx) and _is_device(gw)):
            return "prelu_backward did not return device arrays"
        if tuple(gw.shape) != gw_ref.shape:
            return f"grad_weight has shape {gw.shape}, the CPU's {gw_ref.shape}"
        msg = _close_to(gx.copy_to_host(), gx_ref, dtype)
        xf = np.nan_to_num(x, nan=0.0, neginf=0.0)
        atol = _sum_atol(np.abs(xf * g).sum(keepdims=True), dtype=dtype) ** 0.5
        msg = msg or _close_to(gw.copy_to_host(), gw_ref, dtype, atol)
        if msg:
            return "backward: " + msg
        o = cuda.device_array(x.shape, dtype)
        if fastact.prelu(dx, wd, out=o) is not o:
            return "out= was not returned"
        msg = _close_to(o.copy_to_host(), ref, dtype)
        if fastact.prelu_(dx, wd) is not dx:
            return "prelu_ did not return x"
        whole = dbase.copy_to_host()
        msg = msg or _close_to(_view(whole, vk), ref, dtype)
        if vk == "s" and not np.array_equal(whole[:, 1::2], base[:, 1::2], equal_nan=True):
            return "prelu_ wrote outside the view"
        hx, hw = fastact.prelu_backward(g, x, w, target="cuda")
        if type(hx) is not np.ndarray or type(hw) is not np.ndarray:
            return "host prelu_backward did not return NumPy arrays"
        return msg or _close_to(hx, gx_ref, dtype) or _close_to(hw, gw_ref, dtype, atol)

    return case


def _prelu_scalar_case(fastact, cuda, dtype):
    """A Python float weight (shape ()), a 1-D x and a 0-d x on the host."""
    x = _data((50,), dtype, special=False)
    ref = fastact.prelu(x, 0.1, target="cpu")
    msg = _close_to(fastact.prelu(cuda.to_device(x), 0.1).copy_to_host(), ref, dtype)
    g = _data((50,), dtype, seed=4, special=False)
    gx_ref, gw_ref = fastact.prelu_backward(g, x, 0.1, target="cpu")
    gx, gw = fastact.prelu_backward(cuda.to_device(g), cuda.to_device(x), 0.1)
    if tuple(gw.shape) != ():
        return f"grad_weight of a scalar weight has shape {gw.shape}"
    msg = msg or _close_to(gx.copy_to_host(), gx_ref, dtype)
    msg = msg or _close_to(gw.copy_to_host(), gw_ref, dtype, _sum_atol(x * g, dtype=dtype))
    s = fastact.prelu(np.array(-2.0, dtype), 0.5, target="cuda")
    if np.ndim(s) != 0 or s != -1.0:
        return f"a 0-d input gave {s!r}"
    return msg


CASES = {}
for _lay in SOFTMAX_LAYOUTS:
    for _log in (False, True):
        CASES[f"{'log_' if _log else ''}softmax-{_lay}"] = _softmax_case(_lay, _log)
CASES["softmax-host"] = _softmax_host_case(False)
CASES["log_softmax-host"] = _softmax_host_case(True)
CASES["maxout-last"] = _maxout_case((4, 12), 3, -1)
CASES["maxout-axis1"] = _maxout_case((3, 8, 5), 2, 1)
CASES["maxout-strided"] = _maxout_case((6, 16), 2, 0, "s")
CASES["maxout-transposed"] = _maxout_case((10, 6), 2, 1, "T")
CASES["prelu-nchw"] = _prelu_case((4, 3, 5), 3)
CASES["prelu-nc"] = _prelu_case((7, 3), 3, device_weight=True)
CASES["prelu-single-weight"] = _prelu_case((4, 3, 5), 1)
CASES["prelu-strided"] = _prelu_case((5, 8), 4, "s")
CASES["prelu-scalar"] = _prelu_scalar_case
del _lay, _log


def _errors(fastact, cuda) -> str | None:
    """Clear errors before any write, on device arrays."""
    xh = np.linspace(-1, 1, 12).reshape(3, 4)
    x = cuda.to_device(xh)
    o = cuda.device_array((3, 4))
    o.copy_to_device(np.zeros((3, 4)))
    checks = [
        (ValueError, lambda: fastact.softmax(x, axis=2)),
        (ValueError, lambda: fastact.softmax_(x, axis=1.5)),
        (TypeError, lambda: fastact.softmax_(cuda.to_device(np.arange(12).reshape(3, 4)))),
        (ValueError, lambda: fastact.softmax(x, out=cuda.device_array((4, 3)))),
        (TypeError, lambda: fastact.log_softmax(x, out=cuda.device_array((3, 4), np.float32))),
        (TypeError, lambda: fastact.softmax(x, out=np.empty((3, 4)))),
        (ValueError, lambda: fastact.softmax_backward(x, cuda.to_device(np.ones((3, 3))), out=o)),
        (TypeError, lambda: fastact.log_softmax_backward(x, cuda.to_device(np.ones((3, 4), "f4")))),
        (ValueError, lambda: fastact.maxout(x, 3, out=o)),
        (ValueError, lambda: fastact.maxout(x, 0)),
        (ValueError, lambda: fastact.maxout_backward(cuda.device_array((3, 3)), x, 2, out=o)),
        (ValueError, lambda: fastact.prelu(x, np.ones(3), out=o)),
        (ValueError, lambda: fastact.prelu_(x, cuda.to_device(np.ones(2)))),
        (TypeError, lambda: fastact.prelu_(x, cuda.to_device(np.ones(4, np.float32)))),
        (ValueError, lambda: fastact.prelu_backward(cuda.device_array((3, 3)), x, 0.1, out=o)),
        (ValueError, lambda: fastact.softmax(xh.copy(), axis=5, target="cuda")),
        (TypeError, lambda: fastact.softmax_(np.arange(4), target="cuda")),
    ]
    for exc, call in checks:
        try:
            call()
        except exc:
            continue
        except Exception as e:  # noqa: BLE001 - reported, not swallowed
            return f"expected {exc.__name__}, got {type(e).__name__}: {e}"
        return f"expected {exc.__name__}, nothing raised"
    if not np.array_equal(x.copy_to_host(), xh) or o.copy_to_host().any():
        return "a failed call wrote to x or out"
    return None


# --------------------------------------------------------------------- worker
def _worker() -> None:
    import time
    import warnings

    from numba import cuda

    import fastact

    # NaN rows warn in the simulator's Python arithmetic (on threads: errstate won't do)
    warnings.simplefilter("ignore", RuntimeWarning)
    for name, case in CASES.items():
        for dtype in DTYPES:
            t0 = time.perf_counter()
            try:
                err = case(fastact, cuda, np.dtype(dtype).type)
            except Exception:  # noqa: BLE001 - the traceback is the report
                err = traceback.format_exc(limit=-4)
            dt = round(time.perf_counter() - t0, 2)
            print(json.dumps({"case": f"{name}|{dtype}", "error": err, "s": dt}), flush=True)
    try:
        err = _errors(fastact, cuda)
    except Exception:  # noqa: BLE001
        err = traceback.format_exc(limit=-4)
    print(json.dumps({"case": "errors", "error": err}), flush=True)


@functools.cache
def _simulated() -> dict:
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=ROOT)
    env.pop("NUMBA_DISABLE_JIT", None)
    p = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=ROOT,
    )
    results = {}
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            results[rec["case"]] = rec["error"]
    results["__stderr__"] = p.stderr[-3000:]
    results["__rc__"] = p.returncode
    return results


@needs_numba_cuda
@pytest.mark.parametrize("case", [f"{n}|{d}" for n in CASES for d in DTYPES])
def test_cuda_nonelementwise_simulator_matches_cpu(case):
    res = _simulated()
    assert res["__rc__"] == 0, res["__stderr__"]
    assert case in res, f"the simulator run did not reach {case}:\n{res['__stderr__']}"
    assert res[case] is None, res[case]


@needs_numba_cuda
def test_cuda_nonelementwise_simulator_errors():
    res = _simulated()
    assert "errors" in res, res["__stderr__"]
    assert res["errors"] is None, res["errors"]


if __name__ == "__main__" and "--worker" in sys.argv:
    _worker()
