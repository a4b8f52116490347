"""The command line: ``python -m fastact info`` and ``bench`` (tiny sizes, no timed
assertions), and the reference NumPy formulas of the benchmark against fastact."""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import fastact
from fastact import _bench

# one worker runs this whole module: its module-scoped fixture (a subprocess) runs once
pytestmark = pytest.mark.xdist_group("cli")


ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "fastact", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=timeout,
    )  # fmt: skip


def test_info_runs():
    r = _run("info")
    assert r.returncode == 0, r.stderr
    out = r.stdout.lower()
    assert "numba" in out
    assert "threads" in out
    from fastact import _dispatch

    assert f" {_dispatch.CPU_KIND.lower()}: tables" in out  # (the kind auto's table is for)


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "b.json"
    r = _run("bench", "--only", "relu,sigmoid", "--sizes", "1000", "--repeat", "2",
             "--json", str(path))  # fmt: skip
    assert r.returncode == 0, r.stderr
    return json.loads(path.read_text()), r.stdout


def test_bench_json(bench_json):
    data, stdout = bench_json
    rows = data["rows"]
    keys = {(r["activation"], r["pass"], r["impl"]) for r in rows}
    assert len(keys) == len(rows)  # one row per (activation, pass, impl)
    for name in ("relu", "sigmoid"):
        for pas in ("forward", "backward"):
            for impl in ("fastact-cpu", "fastact-parallel"):
                assert (name, pas, impl) in keys
        assert (name, "forward", "numpy") in keys
    for pas in ("forward", "backward"):
        assert ("(floor)", pas, "floor-cpu") in keys
        assert ("(floor)", pas, "floor-parallel") in keys
    assert {r["activation"] for r in rows} == {"relu", "sigmoid", "(floor)"}
    for r in rows:
        assert r["median_ms"] > 0 and math.isfinite(r["median_ms"])
        assert r["gbps"] > 0 and math.isfinite(r["gbps"])
        assert r["x_floor"] > 0 and math.isfinite(r["x_floor"])
        if r["x_best_peer"] is not None:
            assert r["x_best_peer"] > 0 and math.isfinite(r["x_best_peer"])
    # every fastact forward row has a peer ratio (NumPy is always there)
    for r in rows:
        if r["impl"].startswith("fastact") and r["pass"] == "forward":
            assert r["x_best_peer"] is not None
    m = data["machine"]
    for key in ("cpu", "numba_threads", "threading_layer", "numpy", "numba", "fastact"):
        assert key in m
    assert m["threading_layer"] != "not initialised"
    assert "x floor" in stdout and "sigmoid" in stdout


def test_bench_rejects_unknown_activation():
    r = _run("bench", "--only", "nope", "--sizes", "10", "--repeat", "1")
    assert r.returncode != 0
    assert "nope" in r.stderr


def test_every_activation_has_a_numpy_formula():
    assert set(fastact.ACTIVATIONS) <= set(_bench.NUMPY)
    assert set(fastact.ACTIVATIONS) <= set(_bench.NUMEXPR)


@pytest.mark.parametrize("name", list(fastact.ACTIVATIONS))
def test_numpy_formula_matches(name):
    x = np.linspace(-5, 5, 2001)
    expect = fastact.ACTIVATIONS[name].forward(x)
    got = _bench.numpy_forward(name, x)
    # loose: NumPy's gelu is the tanh approximation (|error| < 1e-3 on this range)
    np.testing.assert_allclose(got, expect, rtol=1e-3, atol=2e-3)


@pytest.mark.skipif(importlib.util.find_spec("numexpr") is None, reason="numexpr not installed")
@pytest.mark.parametrize("name", list(fastact.ACTIVATIONS))
def test_numexpr_formula_matches(name):
    import numexpr as ne

    act = fastact.ACTIVATIONS[name]
    x = np.linspace(-5, 5, 2001).astype(np.float32)
    fp = {k: v for k, v in act.params.items() if k != act.variant}
    got = x.copy()
    ne.evaluate(_bench.NUMEXPR[name].format(**fp), local_dict={"x": got}, out=got,
                casting="same_kind")  # fmt: skip
    np.testing.assert_allclose(got, act.forward(x), rtol=1e-3, atol=2e-3)


def test_bench_plot(tmp_path):
    png = tmp_path / "b.png"
    r = _run("bench", "--only", "relu", "--sizes", "1000", "--repeat", "1", "--no-backward",
             "--plot", str(png))  # fmt: skip
    if importlib.util.find_spec("matplotlib") is None:
        assert r.returncode != 0
        assert "matplotlib" in r.stderr
        assert not png.exists()
    else:
        assert r.returncode == 0, r.stderr
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_markdown_summary(bench_json):
    data, _ = bench_json
    md = _bench.format_markdown(data, "python -m fastact bench --sizes 1000")
    rows = [ln for ln in md.splitlines() if ln.startswith(("| relu |", "| sigmoid |"))]
    assert len(rows) == 2, md
    for ln in rows:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        assert len(cells) == 7
        assert all(float(cells[i]) > 0 for i in (1, 2, 3, 6))
    assert "python -m fastact bench --sizes 1000" in md and "<details>" in md


def test_bench_peer_ratio_quartiles_pair_rounds():
    """x best peer is a ratio of medians; its quartiles are those of the ratio within each
    round (the same round index of both implementations), and the markdown shows both;
    each peer's row has its own ratio to fastact."""
    impls = [
        _bench.Impl("(floor)", "forward", "floor-cpu", None, None, "one"),
        _bench.Impl("(floor)", "forward", "floor-parallel", None, None, "all"),
        _bench.Impl("relu", "forward", "fastact-cpu", None, None, "one"),
        _bench.Impl("relu", "forward", "fastact-parallel", None, None, "all"),
        _bench.Impl("relu", "forward", "torch", None, None, "all", peer=True),
        _bench.Impl("relu", "forward", "numpy", None, None, "one", peer=True),
    ]
    times = {0: [1.0] * 4, 1: [1.0] * 4, 2: [8.0] * 4, 3: [1.0, 2.0, 4.0, 1.0],  # seconds
             4: [2.0] * 4, 5: [9.0] * 4}  # fmt: skip
    rows = {r["impl"]: r for r in _bench._rows(impls, times, np.float32, 4, "float32", 4)}
    par = rows["fastact-parallel"]
    assert par["x_best_peer"] == pytest.approx(2.0 / 1.5)  # torch's median over ours
    # per round 2/1, 2/2, 2/4, 2/1 = 2, 1, 0.5, 2: quartiles 0.875 and 2
    assert par["x_best_peer_quartiles"] == pytest.approx([0.875, 2.0])
    assert rows["fastact-cpu"]["x_best_peer_quartiles"] == pytest.approx([0.25, 0.25])
    assert rows["torch"]["x_best_peer_quartiles"] is None
    # each peer's own row: its median over fastact's faster target (the parallel one, 1.5)
    assert rows["torch"]["x_peer"] == pytest.approx(2.0 / 1.5)
    assert rows["numpy"]["x_peer"] == pytest.approx(9.0 / 1.5)
    assert par["x_peer"] is None and rows["floor-cpu"]["x_peer"] is None
    text = _bench.format_table({"rows": list(rows.values()), "machine": _bench.machine_info(),
                                "config": {}})  # fmt: skip
    assert "1.33 [0.88, 2.00]" in text and "6.00" in text
    result = {"rows": list(rows.values()), "machine": _bench.machine_info(),
              "config": {}}  # fmt: skip
    md = _bench.format_markdown(result, "cmd")
    assert "| relu | 1.5e+03 | 1.50 | 8.00 | torch | 1.33 [0.88, 2.00] | - |" in md
    assert "1000.00 ms parallel (fastest pass 1000.00 ms)" in md
