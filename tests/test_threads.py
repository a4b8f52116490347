"""Concurrency (SPEC §3: no crash, no deadlock, correct results): many Python threads calling
the same kernels, first-call compilation included, and calls from inside thread pools, with
each of Numba's threading layers.

Each layer runs in a fresh interpreter (``NUMBA_THREADING_LAYER`` is read once per process)
with an empty ``NUMBA_CACHE_DIR``, so the threads really compile (and write the cache of)
the same kernels at the same time. A layer this machine lacks (tbb unless ``pip install
tbb``) is skipped, saying so. Numba's workqueue layer aborts the whole process when two
threads launch parallel kernels at once; fastact makes its parallel kernels take turns
there (``_cpu.concurrent_launch_ok``), and the workqueue case checks it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.pool import ThreadPool

import numpy as np
import pytest

import fastact

CHILD = r"""
import sys, threading
from concurrent.futures import ThreadPoolExecutor
import numpy as np
import numba
import fastact

layer = sys.argv[1]
try:
    numba.np.ufunc.parallel._launch_threads()
except (ValueError, ImportError, OSError) as e:
    print(f"layer {layer} unavailable: {e}")
    sys.exit(77)
assert numba.threading_layer() == layer, numba.threading_layer()

rng = np.random.default_rng(0)
X = {n: rng.uniform(-8, 8, n) for n in (1000, 40_000)}
X[1000][:4] = [np.nan, np.inf, -np.inf, -0.0]


def calls(x):
    # (name, thunk) pairs, every thunk returning a fresh array; cheap piecewise-linear
    # formulas (compilation, not the formula, is what is under test), every kernel kind
    x32 = x.astype(np.float32)
    return [
        ("relu", lambda: fastact.relu(x)),
        ("relu_par", lambda: fastact.relu(x, target="parallel")),
        ("relu_", lambda: fastact.relu_(x.copy(), target="parallel")),
        ("relu32", lambda: fastact.relu(x32, target="parallel")),
        ("hardtanh_grad", lambda: fastact.hardtanh_grad(x, min_val=-2.0, target="parallel")),
        ("relu_bwd", lambda: fastact.relu_backward(x[::-1], x, target="parallel")),
        ("relu_bwd_", lambda: (lambda g: fastact.relu_backward(g, x, out=g))(x.copy())),
        ("relu6_strided", lambda: fastact.relu6(x[::3], target="parallel")),
        ("maxout", lambda: fastact.maxout(x.reshape(-1, 40), 4, target="parallel")),
    ]


N_THREADS, ROUNDS = 8, 6
results = {}  # (thread, round, n, name) -> array
errors = []
start = threading.Barrier(N_THREADS)


def worker(t):
    try:
        start.wait()
        for r in range(ROUNDS):
            for n, x in X.items():
                for name, f in calls(x):
                    results[t, r, n, name] = f()
    except BaseException as e:  # noqa: BLE001 - reported below
        errors.append(repr(e))


threads = [threading.Thread(target=worker, args=(t,)) for t in range(N_THREADS)]
for th in threads:
    th.start()
for th in threads:
    th.join(120)
    assert not th.is_alive(), "deadlock: a thread did not finish in 120 s"
assert not errors, errors

# the same from inside a thread pool: disjoint chunks of one array, in place
big = np.random.default_rng(1).uniform(-8, 8, 64_000)
want = fastact.relu6(big, target="cpu")
with ThreadPoolExecutor(8) as pool:
    futs = [pool.submit(fastact.relu6_, big[i:i + 8000], target="parallel")
            for i in range(0, big.size, 8000)]
    for f in futs:
        f.result(timeout=120)
assert np.array_equal(big, want)

# every threaded result equals the single-threaded one, bitwise
for n, x in X.items():
    for name, f in calls(x):
        ref = f()
        for t in range(N_THREADS):
            for r in range(ROUNDS):
                got = results[t, r, n, name]
                assert got.tobytes() == ref.tobytes(), (name, n, t, r)
print("OK", numba.threading_layer(), len(results))
"""


@pytest.mark.parametrize("layer", ["omp", "workqueue", "tbb"])
def test_threads_with_each_threading_layer(layer):
    with tempfile.TemporaryDirectory(prefix="fastact-threads-") as cache:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "FASTACT_"))}
        env.update(NUMBA_THREADING_LAYER=layer, NUMBA_CACHE_DIR=cache, NUMBA_NUM_THREADS="2")
        try:
            proc = subprocess.run([sys.executable, "-c", CHILD, layer], env=env,
                                  capture_output=True, text=True, timeout=400)  # fmt: skip
        except subprocess.TimeoutExpired:
            pytest.fail(f"{layer}: no result in 400 s (deadlock?)")
    if proc.returncode == 77:
        pytest.skip(f"Numba's {layer} threading layer is not installed here: "
                    f"{proc.stdout.strip()}")  # fmt: skip
    assert proc.returncode == 0, f"{layer}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    assert proc.stdout.startswith(f"OK {layer}"), proc.stdout


def test_thread_pools_in_process():
    """This process's own layer: small calls (target="auto") and in-place calls on disjoint
    views from a ThreadPoolExecutor and a multiprocessing ThreadPool, bitwise equal to one
    thread's results."""
    x = np.random.default_rng(2).uniform(-6, 6, (64, 500))
    want = {
        "leaky_relu": fastact.leaky_relu(x, negative_slope=0.2, target="cpu"),
        "hardtanh_grad": fastact.hardtanh_grad(x, target="cpu"),
        "relu6": fastact.relu6(x, target="cpu"),
    }

    def row(i):
        return (
            fastact.leaky_relu(x[i], negative_slope=0.2),
            fastact.hardtanh_grad(x[i], target="parallel"),
            fastact.relu6_(x[i].copy(), target="parallel"),
        )

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(row, range(x.shape[0]), timeout=120))
    with ThreadPool(6) as pool:
        got2 = pool.map_async(row, range(x.shape[0])).get(timeout=120)
    for rows in (got, got2):
        for k, name in enumerate(want):
            np.testing.assert_array_equal(np.stack([r[k] for r in rows]), want[name])

    # in place on disjoint column blocks of one array (strided views) from several threads
    y = x.copy()
    blocks = [y[:, i : i + 50] for i in range(0, y.shape[1], 50)]
    threads = [threading.Thread(target=fastact.hardswish_, args=(b,)) for b in blocks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
        assert not t.is_alive()
    np.testing.assert_array_equal(y, fastact.hardswish(x, target="cpu"))
