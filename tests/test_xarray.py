"""fastact in the PyData stack: ``xarray.apply_ufunc`` over NumPy- and dask-backed
DataArrays (``dask="parallelized"`` and ``dask="allowed"``), and the array-like inputs the
public functions accept as a NumPy ufunc would (subclasses, ``__array__`` objects)."""

from __future__ import annotations

import numpy as np
import pytest

import fastact

xr = pytest.importorskip("xarray", reason="xarray is not installed (extra 'test')")


def _data(dtype=np.float32):
    rng = np.random.default_rng(0)
    return xr.DataArray(
        rng.uniform(-5, 5, (6, 8)).astype(dtype),
        dims=("time", "unit"),
        coords={"time": np.arange(6), "unit": list("abcdefgh")},
        attrs={"units": "V"},
        name="pre",
    )


def test_apply_ufunc_numpy_backed():
    d = _data()
    r = xr.apply_ufunc(fastact.gelu, d, kwargs={"approximate": "tanh"}, keep_attrs=True)
    assert isinstance(r, xr.DataArray)
    assert r.dims == d.dims and r.attrs == d.attrs
    assert (r.unit == d.unit).all()
    assert r.dtype == np.float32
    np.testing.assert_array_equal(r.values, fastact.gelu(d.values, approximate="tanh"))
    # two inputs, broadcast by name: grad over (time, unit), x over (unit,) only
    g = xr.ones_like(d)
    x = d.isel(time=0, drop=True)
    b = xr.apply_ufunc(fastact.sigmoid_backward, g, x)
    assert b.dims == ("time", "unit")
    np.testing.assert_array_equal(b.values, fastact.sigmoid_backward(g.values, x.values))


def test_apply_ufunc_dask_parallelized():
    pytest.importorskip("dask.array", reason="dask[array] is not installed (extra 'dask')")
    d = _data(np.float64)
    lazy = d.chunk({"time": 2, "unit": 4})
    r = xr.apply_ufunc(
        fastact.leaky_relu, lazy, dask="parallelized", kwargs={"negative_slope": 0.1}
    )
    assert r.chunks == lazy.chunks  # still lazy, same blocks
    np.testing.assert_array_equal(
        r.compute(scheduler="sync").values, fastact.leaky_relu(d.values, negative_slope=0.1)
    )
    g = xr.full_like(d, 2.0).chunk({"time": 3})
    b = xr.apply_ufunc(fastact.mish_backward, g, lazy, dask="parallelized")
    np.testing.assert_array_equal(
        b.compute(scheduler="sync").values, fastact.mish_backward(g.values, d.values)
    )
    # dask="allowed" hands the dask array itself to fastact, which maps it block by block
    a = xr.apply_ufunc(fastact.tanh, lazy, dask="allowed")
    assert a.data.name.startswith("tanh-")
    np.testing.assert_array_equal(a.compute(scheduler="sync").values, fastact.tanh(d.values))
    # softmax over a named dimension (core dimension moved last by apply_ufunc)
    s = xr.apply_ufunc(
        fastact.softmax, lazy, input_core_dims=[["unit"]], output_core_dims=[["unit"]],
        dask="allowed",
    )  # fmt: skip
    np.testing.assert_allclose(
        s.compute(scheduler="sync").values, fastact.softmax(d.values, axis=1), rtol=1e-15
    )


def test_in_place_forward_on_a_dataarray_buffer():
    d = _data(np.float64)
    before = d.values.copy()
    fastact.relu_(d.values)  # .values is the DataArray's own buffer: written through
    np.testing.assert_array_equal(d.values, np.maximum(before, 0))


class Volts(np.ndarray):
    """A NumPy subclass, as astropy/pint-style wrappers make them."""


def test_ndarray_subclass_is_kept_like_a_ufunc():
    x = np.linspace(-3, 3, 11).view(Volts)
    for f in (fastact.sigmoid, fastact.sigmoid_grad, fastact.softmax):
        r = f(x)
        assert type(r) is Volts  # as np.exp(x) would give
        np.testing.assert_array_equal(np.asarray(r), f(np.asarray(x)))
    r = fastact.elu(x[::2])  # strided: the ufunc loop
    assert type(r) is Volts
    y = x.copy()
    assert fastact.tanh_(y) is y
    np.testing.assert_array_equal(np.asarray(y), fastact.tanh(np.asarray(x)))


def test_array_like_objects_become_arrays():
    class Wrapped:
        def __init__(self, a):
            self.a = a

        def __array__(self, dtype=None, copy=None):
            return self.a if dtype is None else self.a.astype(dtype)

    a = np.linspace(-3, 3, 7, dtype=np.float32)
    r = fastact.silu(Wrapped(a))
    assert type(r) is np.ndarray and r.dtype == np.float32
    np.testing.assert_array_equal(r, fastact.silu(a))
    np.testing.assert_array_equal(fastact.relu([[-1, 2]]), [[0.0, 2.0]])
    d = _data()
    assert type(fastact.relu(d)) is np.ndarray  # a DataArray: use xr.apply_ufunc for labels
