"""Dask arrays (SPEC §3): the out-of-place forms return lazy dask arrays computed block by
block with the same kernels, on a real ``distributed.LocalCluster`` of two worker processes
(the kernels are pickled by reference and compiled or loaded from the cache on the
workers) and on the local schedulers; in-place forms and ``out=`` are ``TypeError``."""

from __future__ import annotations

import os

import numpy as np
import pytest

import fastact

da = pytest.importorskip("dask.array", reason="dask[array] is not installed (extra 'dask')")
import dask  # noqa: E402

# one worker runs this whole module: its module-scoped fixture (a subprocess) runs once
pytestmark = pytest.mark.xdist_group("dask")


ACTS = list(fastact.ACTIVATIONS.values())
IDS = [a.name for a in ACTS]


def _x(shape=(13, 10), dtype=np.float32, seed=0):
    return np.random.default_rng(seed).uniform(-6, 6, shape).astype(dtype)


def _sync(a):
    return a.compute(scheduler="sync")


def _by_blocks(lazy, f, *args, **kw):
    """``f`` applied by hand to the NumPy slices that make ``lazy``'s blocks along axis 0
    (its other axes in one block): what "block by block with the same kernels" gives."""
    assert all(len(c) == 1 for c in lazy.chunks[1:])
    edges = np.cumsum((0,) + lazy.chunks[0])
    parts = [
        f(*(a[i:j] for a in args), **{k: v[i:j] if isinstance(v, np.ndarray) else v
                                      for k, v in kw.items()})
        for i, j in zip(edges[:-1], edges[1:])
    ]  # fmt: skip
    return np.concatenate(parts)


def _check(got, lazy, whole, f, *args, **kw):
    """Bitwise the kernels on the same blocks; within the SPEC's 4 + 4 ULP of the kernels
    on the whole array (a float32 SIMD loop and its scalar tail may differ in the last bits,
    so where a block ends can move a result by an ULP or two)."""
    assert got.dtype == whole.dtype
    assert got.tobytes() == _by_blocks(lazy, f, *args, **kw).tobytes()
    eps = np.finfo(got.dtype).eps
    np.testing.assert_allclose(got, whole, rtol=8 * eps, atol=8 * eps)


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip(
        "distributed", reason="distributed is not installed (extra 'dask')"
    )
    with distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        dashboard_address=None,
        worker_dashboard_address=None,
    ) as cluster, distributed.Client(cluster, set_as_default=False) as c:
        yield c


def _worker_state():
    import sys

    return os.getpid(), "fastact" in sys.modules


# ------------------------------------------------------------------ LocalCluster
# A few functions only: each worker process compiles (or loads from the disk cache) every
# kernel it runs. 1-d arrays, so every block is contiguous and takes the same SIMD loop as
# the whole array: the results are bitwise equal. (A strided block takes the ufunc loop,
# whose last bits may differ; both are within the SPEC's 4 ULP.)
def test_elementwise_on_a_local_cluster(client):
    x = _x(40, np.float32)
    g = _x(40, np.float32, seed=1)
    x64 = x.astype(np.float64)
    dx = da.from_array(x, chunks=7)
    dg = da.from_array(g, chunks=11)  # other chunks: aligned by fastact._dask
    y = fastact.sigmoid(x)
    cases = [  # (lazy, f, args, kwargs)
        (fastact.sigmoid(dx), fastact.sigmoid, (x,), {}),
        (fastact.sigmoid_backward(dg, y=fastact.sigmoid(dx)), fastact.sigmoid_backward, (g,),
         {"y": y}),
        (fastact.gelu_grad(dx), fastact.gelu_grad, (x,), {}),
        (fastact.leaky_relu(dx, negative_slope=0.2), fastact.leaky_relu, (x,),
         {"negative_slope": 0.2}),
        (fastact.relu_backward(dg, dx.astype(np.float64)), fastact.relu_backward, (g, x64), {}),
    ]  # fmt: skip
    lazy = [c[0] for c in cases]
    assert all(isinstance(a, da.Array) for a in lazy)
    assert lazy[1].chunks == ((7, 4, 3, 7, 1, 6, 5, 2, 5),)  # both grids
    results = client.gather(client.compute(lazy))
    for got, (lz, f, args, kw) in zip(results, cases):
        _check(got, lz, f(*args, **kw), f, *args, **kw)
    state = client.run(_worker_state)
    assert len(state) == 2
    assert all(pid != os.getpid() for pid, _ in state.values())
    assert all(loaded for _, loaded in state.values())  # the kernels ran in the workers


def test_softmax_family_on_a_local_cluster(client):
    x = _x((12, 9), np.float64)
    g = _x((12, 9), np.float64, seed=2)
    dx = da.from_array(x, chunks=(5, 4))
    dg = da.from_array(g, chunks=(3, 3))
    lazy, expect = [], []
    for fwd, bwd in (
        (fastact.softmax, fastact.softmax_backward),
        (fastact.log_softmax, fastact.log_softmax_backward),
    ):
        y = fwd(x)
        ly = fwd(dx)
        assert ly.chunks[-1] == (9,)  # the axis in one block
        assert ly.chunks[0] == (5, 5, 2)  # the other axis as it was
        lazy += [ly, bwd(dg, ly)]
        expect += [y, bwd(g, y)]
    results = client.gather(client.compute(lazy))
    for got, want in zip(results, expect):
        # a row's sum may be taken in another order than in the whole array
        np.testing.assert_allclose(got, want, rtol=8e-16, atol=8e-16)


# ------------------------------------------------------------------ local schedulers
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_activation_block_by_block(dtype):
    """The four out-of-place computations of every activation, block by block."""
    x = _x(dtype=dtype)
    g = _x(dtype=dtype, seed=1)
    dx = da.from_array(x, chunks=(5, -1))
    dg = da.from_array(g, chunks=(5, -1))
    cases = []
    for act in ACTS:
        cases += [
            (act.forward(dx), act.forward, (x,), {}),
            (act.grad(dx), act.grad, (x,), {}),
            (act.backward(dg, dx), act.backward, (g, x), {}),
        ]
        if act.from_output:
            y = act.forward(x)
            cases.append((act.backward(dg, y=act.forward(dx)), act.backward, (g,), {"y": y}))
    results = dask.compute(*[c[0] for c in cases], scheduler="sync")
    for got, (lz, f, args, kw) in zip(results, cases):
        assert got.dtype == dtype
        _check(got, lz, f(*args, **kw), f, *args, **kw)


def test_lazy_and_blockwise():
    x = _x()
    dx = da.from_array(x, chunks=(5, 4))
    r = fastact.sigmoid(dx)
    assert isinstance(r, da.Array)
    assert r.chunks == dx.chunks
    assert r.dtype == np.float32
    assert r.name.startswith("sigmoid-")
    # one task per block, each calling the public function on a NumPy block
    assert len(r.__dask_graph__().layers[r.name]) == dx.npartitions
    np.testing.assert_array_equal(r.compute(scheduler="threads"), fastact.sigmoid(x))


@pytest.mark.parametrize(
    ("dtype", "expect"),
    [(np.float32, np.float32), (np.float64, np.float64), (np.float16, np.float32),
     (np.int64, np.float64), (np.bool_, np.float64)],
)  # fmt: skip
def test_dtypes(dtype, expect):
    x = np.arange(-4, 5).astype(dtype)
    dx = da.from_array(x, chunks=4)
    for r in (fastact.gelu(dx), fastact.gelu_grad(dx), fastact.gelu_backward(dx, dx)):
        assert r.dtype == expect
        assert _sync(r).dtype == expect
    np.testing.assert_array_equal(_sync(fastact.gelu(dx)), fastact.gelu(x))
    with pytest.raises(TypeError, match="complex"):
        fastact.gelu(da.from_array(x.astype(np.complex128)))


def test_parameters_reach_the_blocks():
    x = _x(dtype=np.float64)
    dx = da.from_array(x, chunks=(4, 4))
    cases = [
        (fastact.leaky_relu, dict(negative_slope=0.3)),
        (fastact.gelu, dict(approximate="tanh")),
        (fastact.softplus_grad, dict(beta=2.0, threshold=5.0)),
        (fastact.hardtanh, dict(min_val=-2.0, max_val=0.5)),
        (fastact.elu, dict(alpha=0.5, target="cpu")),
    ]
    for f, kw in cases:
        np.testing.assert_array_equal(_sync(f(dx, **kw)), f(x, **kw))
    g = _x(dtype=np.float64, seed=3)
    y = fastact.celu(x, alpha=2.0)
    got = fastact.celu_backward(da.from_array(g, chunks=3), y=da.from_array(y), alpha=2.0)
    np.testing.assert_array_equal(_sync(got), fastact.celu_backward(g, y=y, alpha=2.0))


def test_backward_broadcasts_and_mixes_numpy():
    x = _x((6, 8), np.float64)
    dx = da.from_array(x, chunks=(4, 3))
    for g in (np.ones(8), _x((6, 1), np.float64, seed=4), np.float64(2.0)):
        want = fastact.mish_backward(g, x)
        got = fastact.mish_backward(g, dx)
        assert got.shape == want.shape
        np.testing.assert_array_equal(_sync(got), want)
        got = fastact.mish_backward(da.from_array(g), x)  # only grad lazy
        np.testing.assert_array_equal(_sync(got), want)
    with pytest.raises(ValueError, match="broadcast"):
        fastact.relu_backward(da.ones((3, 4)), da.ones(5))


def test_zero_d_and_empty():
    z = da.from_array(np.array(-1.5))
    assert _sync(fastact.elu(z)) == fastact.elu(-1.5)
    e = da.zeros((0, 3), chunks=(1, 2))
    assert _sync(fastact.tanh(e)).shape == (0, 3)


@pytest.mark.parametrize("act", ACTS, ids=IDS)
def test_in_place_and_out_are_type_errors(act):
    x = _x()
    dx = da.from_array(x, chunks=5)
    with pytest.raises(TypeError, match=f"{act.name}\\(x\\)"):
        act.forward_(dx)
    for f, args in ((act.forward, (dx,)), (act.grad, (dx,)), (act.backward, (dx, dx))):
        with pytest.raises(TypeError, match="out= is not supported for dask"):
            f(*args, out=np.empty_like(x))


def test_errors_are_eager():
    dx = da.from_array(_x(), chunks=5)
    with pytest.raises(ValueError, match="alpha"):
        fastact.celu(dx, alpha=0.0)
    with pytest.raises(ValueError, match="y="):
        fastact.gelu_backward(dx, y=dx)
    with pytest.raises(ValueError, match="target"):
        fastact.relu(dx, target="gpu")
    for f, f_ in ((fastact.softmax, fastact.softmax_), (fastact.log_softmax, fastact.log_softmax_)):
        with pytest.raises(TypeError, match="dask"):
            f_(dx)
        with pytest.raises(TypeError, match="out= is not supported for dask"):
            f(dx, out=np.empty((13, 10), np.float32))
        with pytest.raises(ValueError, match="axis"):
            f(dx, axis=2)
    with pytest.raises(ValueError, match="shape"):
        fastact.softmax_backward(dx, dx[:, :3])


def test_softmax_rechunks_the_axis_only():
    x = _x((9, 11), np.float32)
    dx = da.from_array(x, chunks=(2, 3))
    for axis in (0, 1, -1):
        r = fastact.log_softmax(dx, axis=axis)
        assert r.dtype == np.float32
        assert r.chunks[axis] == (x.shape[axis],)
        assert r.chunks[axis - 1] == dx.chunks[axis - 1]
        np.testing.assert_array_equal(_sync(r), fastact.log_softmax(x, axis=axis))
    with dask.config.set(scheduler="threads"):
        np.testing.assert_array_equal(
            fastact.softmax(da.from_array(np.arange(6.0).reshape(2, 3))).compute(),
            fastact.softmax(np.arange(6.0).reshape(2, 3)),
        )
