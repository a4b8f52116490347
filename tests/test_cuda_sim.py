"""The CUDA target without a GPU: numba-cuda's simulator, in a subprocess.

``NUMBA_ENABLE_CUDASIM=1`` must be set before Numba is imported, so one subprocess (this
file run as a script) runs every case — every activation (and gelu variant) × forward,
``_`` in place, grad, backward from x and from y, out=, host arrays with target="cuda",
strided device views, errors × float32 and float64 — on small arrays, and reports each
result as a JSON line. The tests below assert one case each, against the CPU result.

Also here, without the simulator: ``import fastact`` does not import ``numba.cuda``, and
``target="cuda"`` without a usable GPU raises the ``RuntimeError`` of SPEC §3.
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
pytestmark = pytest.mark.xdist_group("cuda_sim")


HAVE_NUMBA_CUDA = importlib.util.find_spec("numba_cuda") is not None
needs_numba_cuda = pytest.mark.skipif(
    not HAVE_NUMBA_CUDA, reason="numba-cuda is not installed (pip install 'fastact[cuda]')"
)

DTYPES = ("float32", "float64")
FUNCTIONS = ("forward", "forward_", "grad", "backward_x", "backward_y", "out", "host", "strided")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _variants():
    """(case name, activation, keyword parameters): every activation, both gelu forms."""
    import fastact

    res = []
    for act in fastact.ACTIVATIONS.values():
        if act.variant:
            for v in act.variants:
                res.append((f"{act.name}-{v}", act, {act.variant: v}))
        else:
            res.append((act.name, act, {}))
    return res


def _inputs(dtype: np.dtype) -> np.ndarray:
    """~100 values (more than the simulator's 64 threads, so the grid-stride loop turns):
    special values, kinks, subnormals, the tails, and a grid."""
    t = np.dtype(dtype).type
    tiny = np.finfo(dtype).smallest_subnormal * 3
    special = [np.nan, np.inf, -np.inf, 0.0, -0.0, tiny, -tiny, 1.0, -1.0, 0.5, -0.5, 3.0, -3.0]
    special += [6.0, -0.75, -1.19, -1.28, 19.9, 20.5, -20.5, 30.0, -30.0, 88.0, -88.0, -100.0]
    return np.concatenate([np.array(special), np.linspace(-12, 12, 74)]).astype(t)


def _close_to(got, ref, dtype, slack=0.0, rtol=0.0) -> str | None:
    """None if ``got`` matches the CPU result ``ref`` to 64 eps relative or by the absolute
    ``slack``, else why not. This checks the kernels' plumbing and the formulas' logic, not
    the GPU's last bits: the simulator runs the elementary functions through NumPy/float64
    stand-ins for libdevice (benchmarks/gpu_check.py measures ULP on a real device)."""
    got, ref = np.asarray(got, dtype=dtype), np.asarray(ref, dtype=dtype)
    if got.shape != ref.shape:
        return f"shape {got.shape} != {ref.shape}"
    fi = np.finfo(dtype)
    with np.errstate(invalid="ignore"):
        tol = (64 * fi.eps + rtol) * np.abs(ref) + 16 * fi.smallest_subnormal + slack
        ok = (got == ref) | (np.isnan(got) & np.isnan(ref)) | (np.abs(got - ref) <= tol)
    if ok.all():
        return None
    i = np.flatnonzero(~ok.ravel())[:3]
    return f"{(~ok).sum()} mismatches, e.g. got {got.ravel()[i]} vs cpu {ref.ravel()[i]}"


def _slack(x, g, dtype):
    """Absolute allowance for derivatives: 8 eps·|grad| where |x| is in [0.5, 2]."""
    a = np.abs(np.asarray(x, dtype=np.float64))
    return np.where((a >= 0.5) & (a <= 2), 8 * np.finfo(dtype).eps * np.abs(g), 0.0)


def _rtol(name, x, dtype):
    """SPEC §4: gelu(approximate='tanh') is held to 1e-4 (float32) / 1e-12 (float64)
    relative beyond |x| = 2."""
    if name != "gelu-tanh":
        return 0.0
    return np.where(np.abs(x) > 2, 1e-4 if dtype == np.float32 else 1e-12, 0.0)


# --------------------------------------------------------------------- worker


def _dense(a):
    """A contiguous copy: the CPU references of strided cases take the compiled contiguous
    kernels (the same values, elementwise) and not the ufunc, whose compilation for every
    activation and dtype was 95% of this subprocess's time."""
    return np.ascontiguousarray(a)


def _run_case(act, kw, fname, dtype, cuda):
    """Run one case under the simulator; return None or a failure message."""
    x = _inputs(dtype)
    rng = np.random.default_rng(0)
    g = rng.uniform(-2, 2, x.size).astype(dtype)
    cpu = dict(kw, target="cpu")
    name = act.name + (f"-{kw[act.variant]}" if act.variant else "")

    def _close(got, ref, dtype, slack=0.0, xs=x):
        return _close_to(got, ref, dtype, slack, _rtol(name, xs, dtype))

    dev = cuda.to_device

    def host(a):
        if not getattr(a, "__cuda_ndarray__", False):
            return f"result is a {type(a).__name__}, not a device array"
        return a.copy_to_host()

    if fname == "forward":
        r = act.forward(dev(x), **kw)
        return r if isinstance(r, str) else _close(host(r), act.forward(x, **cpu), dtype)
    if fname == "forward_":
        d = dev(x)
        r = act.forward_(d, **kw)
        if r is not d:
            return "forward_ did not return its argument"
        return _close(d.copy_to_host(), act.forward(x, **cpu), dtype)
    if fname == "grad":
        sl = _slack(x, 1.0, dtype)
        return _close(host(act.grad(dev(x), **kw)), act.grad(x, **cpu), dtype, sl)
    if fname == "backward_x":
        dg = dev(g)
        r = act.backward(dg, dev(x), out=dg, **kw)  # in place into grad
        if r is not dg:
            return "backward(out=grad) did not return out"
        sl = _slack(x, g, dtype)
        return _close(dg.copy_to_host(), act.backward(g, x, **cpu), dtype, sl)
    if fname == "backward_y":
        y = act.forward(x, **cpu)
        r = act.backward(dev(g), y=dev(y), **kw)
        return _close(host(r), act.backward(g, y=y, **cpu), dtype)  # gelu has no y form
    if fname == "out":
        o = cuda.device_array(x.shape, dtype=x.dtype)
        r = act.grad(dev(x), out=o, **kw)
        if r is not o:
            return "out= was not returned"
        return _close(o.copy_to_host(), act.grad(x, **cpu), dtype, _slack(x, 1.0, dtype))
    if fname == "host":  # NumPy arrays with target="cuda": copied over and back
        r = act.forward(x, target="cuda", **kw)
        if type(r) is not np.ndarray or r.dtype != x.dtype:
            return f"host input gave {type(r).__name__}"
        msg = _close(r, act.forward(x, **cpu), dtype)
        view = x.copy().reshape(11, 9)[:, ::2]  # in place through a strided view
        ref, xv = act.forward(_dense(view), **cpu), view.copy()
        act.forward_(view, target="cuda", **kw)
        return msg or _close(view, ref, dtype, xs=xv)
    if fname == "strided":  # non-contiguous 2-D device views, in place and backward
        base = dev(x.reshape(11, 9))
        view = base[:, 1::2]
        ref_x = x.reshape(11, 9)[:, 1::2]
        act.forward_(view, **kw)
        whole = base.copy_to_host()
        msg = _close(whole[:, 1::2], act.forward(_dense(ref_x), **cpu), dtype, xs=ref_x)
        untouched = _close(whole[:, ::2], x.reshape(11, 9)[:, ::2], dtype, xs=0.0)
        gv = dev(g.reshape(11, 9))[::2, :]
        r = act.backward(gv, dev(x.reshape(11, 9))[::2, :], **kw)
        ref_b = act.backward(_dense(g.reshape(11, 9)[::2, :]), _dense(x.reshape(11, 9)[::2, :]),
                             **cpu)  # fmt: skip
        sl = _slack(x.reshape(11, 9)[::2, :], g.reshape(11, 9)[::2, :], dtype)
        xb = x.reshape(11, 9)[::2, :]
        return (
            msg or (untouched and "wrote outside the view") or _close(host(r), ref_b, dtype, sl, xb)
        )
    raise AssertionError(fname)


def _errors(cuda) -> str | None:
    """Clear errors before any write, on device arrays."""
    import fastact

    x = cuda.to_device(np.linspace(-1, 1, 8))
    checks = [
        (TypeError, lambda: fastact.relu_(cuda.to_device(np.arange(8)))),
        (ValueError, lambda: fastact.relu(x, out=cuda.device_array(7))),
        (TypeError, lambda: fastact.relu(x, out=cuda.device_array(8, np.float32))),
        (ValueError, lambda: fastact.relu_backward(x, cuda.to_device(np.ones(7)))),
        (TypeError, lambda: fastact.relu_backward(x, cuda.to_device(np.ones(8, np.float32)))),
        (TypeError, lambda: fastact.relu(x, out=np.empty(8))),
    ]
    for exc, call in checks:
        try:
            call()
        except exc:
            continue
        except Exception as e:  # noqa: BLE001 - reported, not swallowed
            return f"expected {exc.__name__}, got {type(e).__name__}: {e}"
        return f"expected {exc.__name__}, nothing raised"
    if not np.array_equal(x.copy_to_host(), np.linspace(-1, 1, 8)):
        return "a failed call wrote to x"
    return None


def _worker() -> None:
    from numba import cuda

    from fastact import _cuda

    print(json.dumps({"case": "available", "error": None if _cuda.available() else "no"}))
    for name, act, kw in _variants():
        for dtype in DTYPES:
            for fname in _functions(act):
                try:
                    err = _run_case(act, kw, fname, np.dtype(dtype), cuda)
                except Exception:  # noqa: BLE001 - the traceback is the report
                    err = traceback.format_exc(limit=-4)
                print(json.dumps({"case": f"{name}|{fname}|{dtype}", "error": err}), flush=True)
    try:
        err = _errors(cuda)
    except Exception:  # noqa: BLE001
        err = traceback.format_exc(limit=-4)
    print(json.dumps({"case": "errors", "error": err}), flush=True)


# ---------------------------------------------------------------------- tests


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


def _functions(act):
    """The cases of an activation: backward from y only where its derivative allows it."""
    return [f for f in FUNCTIONS if f != "backward_y" or act.from_output]


def _case_ids():
    return [
        f"{name}|{fname}|{dtype}"
        for name, act, _ in _variants()
        for dtype in DTYPES
        for fname in _functions(act)
    ]


@needs_numba_cuda
@pytest.mark.parametrize("case", _case_ids())
def test_cuda_simulator_matches_cpu(case):
    res = _simulated()
    assert res["__rc__"] == 0, res["__stderr__"]
    assert case in res, f"the simulator run did not reach {case}:\n{res['__stderr__']}"
    assert res[case] is None, res[case]


@needs_numba_cuda
def test_cuda_simulator_errors_and_availability():
    res = _simulated()
    assert res.get("available") is None, "the simulator should count as available"
    assert "errors" in res, res["__stderr__"]
    assert res["errors"] is None, res["errors"]


def _run_python(code: str, **env) -> subprocess.CompletedProcess:
    e = dict(os.environ, PYTHONPATH=ROOT, **env)
    e.pop("NUMBA_ENABLE_CUDASIM", None)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=300
    )


def test_import_does_not_import_numba_cuda():
    p = _run_python(
        "import sys, fastact, numpy as np\n"
        "fastact.sigmoid(np.ones(4, np.float32), target='cpu')\n"
        "assert 'numba.cuda' not in sys.modules, 'numba.cuda was imported'\n"
        "assert 'numba_cuda' not in sys.modules, 'numba_cuda was imported'\n"
        "print('ok')"
    )
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


def test_cuda_target_without_gpu_raises_runtime_error():
    """No usable GPU (hidden with CUDA_VISIBLE_DEVICES) -> RuntimeError saying so."""
    p = _run_python(
        "import fastact, numpy as np\n"
        "x = np.ones(4, np.float32)\n"
        "try:\n"
        "    fastact.sigmoid_(x, target='cuda')\n"
        "except RuntimeError as e:\n"
        "    assert 'GPU' in str(e) or 'numba-cuda' in str(e), e\n"
        "    assert (x == 1).all(), 'x was written'\n"
        "    print('ok')\n",
        CUDA_VISIBLE_DEVICES="",
    )
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stdout + p.stderr


def test_this_module_runs_on_one_worker(request):
    """Under pytest-xdist's ``--dist loadgroup`` the scheduler keeps an xdist_group on one
    worker by the group name that it appends to each node id; so this module's subprocess
    runs once. pytest 9.2 ignores that suffix (pytest-xdist issue 1386), hence its pin."""
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not run by pytest-xdist with --dist loadgroup")
    assert request.node.nodeid.endswith("@cuda_sim"), request.node.nodeid


if __name__ == "__main__" and "--worker" in sys.argv:
    _worker()
