"""The asv suite runs: every benchmark class in ``benchmarks/*.py`` (found generically, so
other engineers' modules are covered too) is instantiated on the tiny grid
(``FASTACT_ASV_GRID=tiny``), and ``setup`` + each benchmark method run once per cell; the
reference formulas the benchmarks compare against agree with fastact; ``asv check`` passes;
the results-to-table script works.

Cells: every combination of the first two parameters (e.g. activation x impl), the others
cycled through, so each value of each parameter runs at least once at a fraction of the
full product's cost.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastact

# one worker runs this whole module: its module-scoped fixture (a subprocess) runs once
pytestmark = pytest.mark.xdist_group("benchmarks")


ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
MODULES = sorted(p.stem for p in BENCH.glob("*.py") if p.stem != "__init__")
# modules of this suite whose classes must each run at least one cell on any machine
OWN = {"bench_activations", "bench_sigmoid", "bench_memory", "bench_accuracy",
       "bench_speedup", "bench_info"}  # fmt: skip
PREFIXES = ("time_", "timeraw_", "peakmem_", "mem_", "track_")


@pytest.fixture(scope="module")
def bench():
    """The ``benchmarks`` package imported afresh on the tiny grid."""

    def purge():
        for m in [m for m in sys.modules if m == "benchmarks" or m.startswith("benchmarks.")]:
            del sys.modules[m]

    old = os.environ.get("FASTACT_ASV_GRID")
    os.environ["FASTACT_ASV_GRID"] = "tiny"
    sys.path.insert(0, str(ROOT))
    purge()
    try:
        yield importlib.import_module("benchmarks")
    finally:
        purge()
        sys.path.remove(str(ROOT))
        if old is None:
            del os.environ["FASTACT_ASV_GRID"]
        else:
            os.environ["FASTACT_ASV_GRID"] = old


def _attr(name, *sources, default=None):
    for s in sources:
        if hasattr(s, name):
            return getattr(s, name)
    return default


def _grid(params):
    if not params:
        return [()]
    if not isinstance(params[0], (list, tuple)):
        params = [params]
    head = list(itertools.product(*params[:2]))
    rest = params[2:]
    return [h + tuple(p[i % len(p)] for p in rest) for i, h in enumerate(head)]


def _benchmarks(module):
    """``(owner class or None, [method names or functions])`` as asv finds them."""
    for name, obj in vars(module).items():
        if getattr(obj, "__module__", None) != module.__name__ or name.startswith("_"):
            continue
        if inspect.isclass(obj):
            methods = [m for m in dir(obj) if m.startswith(PREFIXES) and callable(getattr(obj, m))]
            if methods:
                yield obj, methods
        elif inspect.isfunction(obj) and name.startswith(PREFIXES):
            yield None, [obj]


def _run_cell(owner, method, args, cache):
    """setup, the method once, teardown. Returns ``None`` or the skip reason."""
    inst = owner() if owner is not None else None
    func = getattr(inst, method) if inst is not None else method
    pre = () if cache is None else (cache,)
    setup = getattr(inst, "setup", None)
    try:
        if setup is not None:
            setup(*pre, *args)
    except NotImplementedError as e:
        return str(e) or "NotImplementedError"
    try:
        value = func(*pre, *args)
        name = func.__name__
        if name.startswith("track_"):
            assert isinstance(value, (int, float, np.integer, np.floating)), value
            assert not math.isnan(value), f"{name}{args} tracked NaN"
        elif name.startswith("timeraw_"):
            code = value if isinstance(value, str) else value[0]
            setup_code = "" if isinstance(value, str) else value[1]
            subprocess.run([sys.executable, "-c", setup_code + "\n" + code], check=True,
                           timeout=120)  # fmt: skip
    finally:
        teardown = getattr(inst, "teardown", None)
        if teardown is not None:
            teardown(*pre, *args)
    return None


@pytest.mark.parametrize("modname", MODULES)
def test_benchmark_module_runs(bench, modname):
    module = importlib.import_module(f"benchmarks.{modname}")
    found = list(_benchmarks(module))
    if not found:
        pytest.skip(f"benchmarks/{modname}.py defines no asv benchmark (a helper module)")
    failures, report = [], []
    for owner, methods in found:
        cache = None
        if owner is not None and hasattr(owner, "setup_cache"):
            cache = owner().setup_cache()
        ran = skipped = 0
        for m in methods:
            func = getattr(owner, m) if owner is not None else m
            label = f"{modname}.{owner.__name__ + '.' if owner else ''}{func.__name__}"
            for args in _grid(_attr("params", func, owner, module, default=[])):
                try:
                    reason = _run_cell(owner, m if owner is not None else func, args, cache)
                except Exception as e:  # a broken benchmark: collect them all
                    failures.append(f"{label}{args}: {type(e).__name__}: {e}")
                    continue
                ran += reason is None
                skipped += reason is not None
        report.append(f"{owner.__name__ if owner else methods[0].__name__}: {ran} ran, "
                      f"{skipped} skipped")  # fmt: skip
        if modname in OWN and owner is not None and ran == 0:
            failures.append(f"{modname}.{owner.__name__}: every cell skipped on this machine")
    print("; ".join(report))
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------- the references
def _x(dtype=np.float64, n=2000, seed=7):
    # smooth points only: the kinks (0, +-0.5, +-1, +-3, 6) and 20 have measure zero
    return (np.random.default_rng(seed).standard_normal(n) * 3).astype(dtype)


def test_every_activation_has_references(bench):
    from benchmarks import references as R

    names = set(fastact.ACTIVATIONS)
    assert set(R.NUMPY) == names, "add a NumPy formula (f, f') in benchmarks/references.py"
    assert set(R.mpmath_table("float64")) == names, "add an mpmath formula for ULP tracking"
    assert set(R.SCIPY_NAMES) <= names
    assert set(R.scipy_table()) <= set(R.SCIPY_NAMES)


@pytest.mark.parametrize("name", list(fastact.ACTIVATIONS))
def test_numpy_reference_matches_fastact(bench, name):
    from benchmarks import references as R

    f, fp = R.NUMPY[name]
    params = R.NUMPY_PARAMS.get(name, {})
    act = fastact.ACTIVATIONS[name]
    x = _x()
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(f(x), act.forward(x, **params), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(fp(x), act.grad(x, **params), rtol=1e-9, atol=1e-12)
    x32 = _x(np.float32)
    assert f(x32).dtype == np.float32 and fp(x32).dtype == np.float32, "float32 stays float32"


def test_scipy_references_match_fastact(bench):
    from benchmarks import references as R

    table = R.scipy_table()
    assert {"sigmoid", "log_sigmoid"} <= set(table)
    for name, (f_, fp) in table.items():
        act = fastact.ACTIVATIONS[name]
        x = _x()
        np.testing.assert_allclose(f_(x.copy()), act.forward(x), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(fp(x), act.grad(x), rtol=1e-9, atol=1e-12)


def test_torch_references_match_fastact(bench):
    from benchmarks import references as R

    try:
        torch = R.torch_module()
    except NotImplementedError:
        pytest.skip("PyTorch is not installed (an optional peer of the benchmarks)")
    fails = []  # PyTorch rounds some constants to float32 (hardsigmoid's 1/6): rtol 1e-6
    for name, act in fastact.ACTIVATIONS.items():
        x, g = _x(), _x(seed=8)
        t = torch.from_numpy(x.copy())
        R.torch_forward_(name)(t)
        if not np.allclose(t.numpy(), act.forward(x), rtol=1e-6, atol=1e-9):
            fails.append(f"{name} forward")
        try:
            saved, bw = R.torch_backward(name)
        except NotImplementedError:
            continue
        tx = torch.from_numpy(x)
        got = bw(torch.from_numpy(g), saved(tx)).numpy()
        if not np.allclose(got, act.backward(g, x), rtol=1e-6, atol=1e-9):
            fails.append(f"{name} backward")
    assert not fails, fails


def test_ulp_errors(bench):
    from benchmarks.bench_accuracy import points, ulp_errors

    x = points("float32")
    exact = fastact.relu(x)
    assert np.max(ulp_errors(exact, "relu", "float32")) == 0
    off = np.nextafter(exact, np.float32(np.inf))
    u = ulp_errors(off, "relu", "float32")
    normal = np.abs(exact) >= np.finfo(np.float32).tiny
    np.testing.assert_allclose(u[normal & (exact > 0)], 1.0)
    nan = np.full_like(exact, np.nan)
    assert np.all(np.isinf(ulp_errors(nan, "relu", "float32")))


# ---------------------------------------------------------------- asv and the table script
def test_asv_check():
    if shutil.which("asv") is None and importlib.util.find_spec("asv") is None:
        pytest.skip("asv is not installed (pip install -e .[test] brings it)")
    r = subprocess.run(
        [sys.executable, "-m", "asv", "check", "-E", f"existing:{sys.executable}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0 and "No problems found" in r.stdout, r.stdout + r.stderr


def _fake_results(tmp_path):
    names = ["sigmoid", "relu"]
    impls = ["fastact-cpu", "fastact-parallel", "fastact-cuda", "numpy", "scipy", "torch"]
    params = [[repr(n) for n in names], [repr(i) for i in impls], ["'1e6'"], ["'float32'"]]
    times = {"fastact-cpu": 2e-3, "fastact-parallel": 1e-3, "fastact-cuda": None,
             "numpy": 10e-3, "scipy": 4e-3, "torch": 2e-3}  # fmt: skip
    result = []
    for name in names:
        for i in impls:
            t = times[i]
            if name == "relu" and i == "scipy":
                t = None
            result.append(t if t is None or name == "sigmoid" else t / 4)
    doc = {
        "commit_hash": "abc", "env_name": "existing-py", "date": 0, "version": 2,
        "params": {"machine": "box", "cpu": "test cpu", "num_cpu": "2"},
        "result_columns": ["result", "params", "version", "started_at", "duration"],
        "results": {"bench_activations.Forward.time_forward_": [result, params, "v", 0, 1]},
    }  # fmt: skip
    path = tmp_path / "abc-existing-py.json"
    path.write_text(json.dumps(doc))
    return path


def test_asv_table_script(tmp_path):
    path = _fake_results(tmp_path)
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "asv_table.py"), str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    out = r.stdout
    rows = [line for line in out.splitlines() if line.startswith("| sigmoid")]
    assert rows, out
    # best fastact 1 ms; numpy 10 ms -> 10x; scipy 4 ms -> 4x; torch 2 ms -> 2x
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[-3:] == ["10.0x", "4.0x", "2.0x"], cells
    relu = [line for line in out.splitlines() if line.startswith("| relu")][0]
    assert "—" in relu  # no SciPy relu
