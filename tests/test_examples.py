"""The example MLP (a few steps, and the figures it is there to show) and the gallery
command ``python -m fastact plot``."""

from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from fastact.__main__ import main as cli

# one worker runs this whole module: its module-scoped fixture (a subprocess) runs once
pytestmark = pytest.mark.xdist_group("examples")


ROOT = pathlib.Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def _has(mod: str) -> bool:
    return importlib.util.find_spec(mod) is not None


@pytest.fixture(scope="module")
def mlp():
    spec = importlib.util.spec_from_file_location("mlp_example", ROOT / "examples" / "mlp.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_example_runs_a_few_steps(tmp_path):
    cmd = [sys.executable, "examples/mlp.py", "--steps", "20", "--depth", "3", "--width", "16",
           "--n", "400", "--log-every", "10", "--no-progress"]  # fmt: skip
    if _has("matplotlib"):
        cmd += ["--plot", str(tmp_path / "mlp.png")]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [ln.split() for ln in r.stdout.splitlines() if ln[:5].strip().isdigit()]
    assert [int(row[0]) for row in rows] == [0, 10, 20]
    for row in rows:
        assert len(row) == 4 + 3  # step, loss, acc, dead, one norm per hidden layer
        assert all(np.isfinite(float(v)) for v in row[1:])
    assert "test accuracy" in r.stdout
    if _has("matplotlib"):
        assert (tmp_path / "mlp.png").read_bytes()[:8] == PNG


def test_example_shows_vanishing_gradient_and_not_with_relu(mlp):
    quiet = dict(steps=0, n=400, progress=False, out=lambda *a: None)
    sig = mlp.train(act="sigmoid", depth=6, **quiet)["history"]["grad_norms"][0]
    relu = mlp.train(act="relu", depth=6, **quiet)["history"]["grad_norms"][0]
    # sigmoid' <= 1/4: the gradient shrinks at every layer on its way to the input
    assert all(a < b / 2 for a, b in zip(sig[:-1], sig[1:])), sig
    assert sig[-1] / sig[0] > 1e3
    # He-initialised ReLU keeps it within a small factor across the depth
    assert max(relu) / min(relu) < 3, relu


def test_example_training_step_matches_finite_differences(mlp):
    """The in-place forward and from-output backward give the true gradient."""
    x, y = mlp.two_spirals(16, seed=3)
    x = x.astype(np.float64)
    for act in ("tanh", "gelu"):  # from the output; from the input
        model = mlp.MLP(act, depth=2, width=5, seed=1)
        model.W = [w.astype(np.float64) for w in model.W]
        model.b = [b.astype(np.float64) for b in model.b]

        def loss(model=model):
            logp, _, _ = model.forward(x)
            return -np.mean(logp[np.arange(len(y)), y])

        logp, hs, zs = model.forward(x)
        dW, _ = model.backward(logp, y, hs, zs)
        w, (i, j) = model.W[1], (2, 3)
        keep, h = w[i, j], 1e-6
        w[i, j] = keep + h
        up = loss()
        w[i, j] = keep - h
        down = loss()
        w[i, j] = keep
        assert dW[1][i, j] == pytest.approx((up - down) / (2 * h), rel=1e-6, abs=1e-9)


@pytest.mark.skipif(not _has("matplotlib"), reason="matplotlib is not installed")
def test_plot_writes_a_gallery(tmp_path, capsys):
    out = tmp_path / "g.png"
    assert cli(["plot", "--out", str(out), "--only", "relu,sigmoid,gelu"]) == 0
    assert out.read_bytes()[:8] == PNG
    assert "3 activations" in capsys.readouterr().out
    assert cli(["plot", "--out", str(out), "--only", "relu,nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_plot_without_matplotlib_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert cli(["plot", "--out", str(tmp_path / "g.png")]) == 2
    assert "matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "g.png").exists()
