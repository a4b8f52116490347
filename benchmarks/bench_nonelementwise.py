"""asv benchmarks of the non-elementwise activations: softmax, log_softmax (forward, in place,
backward), prelu and maxout, next to NumPy formulations and ``scipy.special``, with the
memory floor (an in-place multiply over the same array and threads) as its own benchmark.

Self-contained: impl in {fastact-cpu, fastact-parallel, fastact-cuda, numpy, scipy}; a cell an
impl or the machine cannot run (fastact-cuda without a GPU) raises ``NotImplementedError`` in
``setup``; CUDA cells work on device arrays and synchronise before the timer stops.
``FASTACT_ASV_GRID=tiny`` shrinks sizes.
"""

from __future__ import annotations

import os

import numpy as np

TINY = os.environ.get("FASTACT_ASV_GRID", "") == "tiny"
SHAPES = ["16x64"] if TINY else ["256x4096", "1e4x1e4"]
IMPLS = ["fastact-cpu", "fastact-parallel", "fastact-cuda", "numpy", "scipy"]
FASTACT = ["fastact-cpu", "fastact-parallel", "fastact-cuda"]
DTYPES = ["float32", "float64"]


def _shape(label: str) -> tuple[int, int]:
    a, b = label.split("x")
    return int(float(a)), int(float(b))


def _data(label: str, dtype: str) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(_shape(label)).astype(dtype)


def _target(impl: str) -> str:
    return impl.split("-", 1)[1]


def _device(impl: str, *arrays):
    """The arrays on the GPU for fastact-cuda (NotImplementedError without one), else as is."""
    if impl != "fastact-cuda":
        return arrays if len(arrays) > 1 else arrays[0]
    from fastact import _cuda

    if not _cuda.available() or _cuda.simulator():
        raise NotImplementedError("no usable CUDA GPU (or numba-cuda is not installed)")
    from numba import cuda

    res = tuple(cuda.to_device(a) for a in arrays)
    return res if len(res) > 1 else res[0]


def _synced(impl: str, fn):
    """fn, followed by a device synchronisation for fastact-cuda."""
    if impl != "fastact-cuda":
        return fn
    from numba import cuda

    def run():
        r = fn()
        cuda.synchronize()
        return r

    return run


def _np_softmax(x, axis, log):
    with np.errstate(all="ignore"):
        z = x - x.max(axis=axis, keepdims=True)
        if log:
            return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))
        e = np.exp(z)
        e /= e.sum(axis=axis, keepdims=True)
        return e


def _np_softmax_(x, axis, log):
    """NumPy in place: as few temporaries as NumPy allows (row-sized ones only)."""
    with np.errstate(all="ignore"):
        x -= x.max(axis=axis, keepdims=True)
        if log:
            x -= np.log(np.exp(x).sum(axis=axis, keepdims=True))  # exp(x) is x-sized
        else:
            np.exp(x, out=x)
            x /= x.sum(axis=axis, keepdims=True)


class Softmax:
    """softmax / log_softmax out of place (and into a preallocated out for fastact)."""

    params = [["softmax", "log_softmax"], IMPLS, SHAPES, DTYPES, ["-1", "0"]]
    param_names = ["op", "impl", "shape", "dtype", "axis"]
    timeout = 300

    def setup(self, op, impl, shape, dtype, axis):
        if shape == "1e4x1e4" and (dtype == "float64" or op == "log_softmax" or axis == "0"):
            raise NotImplementedError("the 1e4 x 1e4 cell is float32 softmax along -1 only")
        self.x = _data(shape, dtype)
        self.out = np.empty_like(self.x)
        self.axis = int(axis)
        log = op == "log_softmax"
        if impl.startswith("fastact"):
            import fastact

            f, t = getattr(fastact, op), _target(impl)
            self.x, self.out = _device(impl, self.x, self.out)
            self.fn = _synced(impl, lambda: f(self.x, axis=self.axis, target=t))
            self.fn_out = _synced(impl, lambda: f(self.x, axis=self.axis, out=self.out, target=t))
            self.fn()  # compile outside the timer
        elif impl == "numpy":
            self.fn = lambda: _np_softmax(self.x, self.axis, log)
            self.fn_out = None
        else:
            try:
                import scipy.special as sp
            except ImportError:
                raise NotImplementedError("scipy is not installed") from None
            f = getattr(sp, op)
            self.fn = lambda: f(self.x, axis=self.axis)
            self.fn_out = None

    def time_forward(self, *args):
        self.fn()

    def time_forward_out(self, *args):
        if self.fn_out is None:  # NumPy/SciPy have no out=: the same call
            self.fn()
        else:
            self.fn_out()

    def peakmem_forward(self, *args):
        self.fn()


class SoftmaxInplace:
    """softmax_ in place next to NumPy's in-place formulation and the memory floor."""

    params = [["softmax", "log_softmax"], [*FASTACT, "numpy"], SHAPES]
    param_names = ["op", "impl", "shape"]
    timeout = 300

    def setup(self, op, impl, shape):
        self.x = _data(shape, "float32")
        log = op == "log_softmax"
        if impl.startswith("fastact"):
            import fastact

            f, t = getattr(fastact, op + "_"), _target(impl)
            self.x = _device(impl, self.x)
            self.fn = _synced(impl, lambda: f(self.x, target=t))
            self.fn()
        else:
            self.fn = lambda: _np_softmax_(self.x, -1, log)

    def time_inplace(self, *args):
        self.fn()

    def peakmem_inplace(self, *args):
        self.fn()


class Floor:
    """The memory floor: an in-place multiply over the same array with the same threads."""

    params = [["fastact-cpu", "fastact-parallel"], SHAPES]
    param_names = ["impl", "shape"]

    def setup(self, impl, shape):
        from numba import njit, prange

        parallel = impl == "fastact-parallel"

        @njit(parallel=parallel, error_model="numpy", fastmath={"contract"})
        def scale(a, c):
            for i in prange(a.size):
                a[i] *= c

        self.kernel = scale
        self.flat = _data(shape, "float32").reshape(-1)
        self.c = np.float32(1.0000001)
        self.kernel(self.flat, self.c)

    def time_floor(self, *args):
        self.kernel(self.flat, self.c)


class SoftmaxBackward:
    """softmax_backward / log_softmax_backward from the output, vs the NumPy formula."""

    params = [["softmax", "log_softmax"], [*FASTACT, "numpy"], SHAPES[:1], DTYPES]
    param_names = ["op", "impl", "shape", "dtype"]

    def setup(self, op, impl, shape, dtype):
        x = _data(shape, dtype)
        self.g = _data(shape, dtype)[::-1].copy()
        log = op == "log_softmax"
        self.y = _np_softmax(x, -1, log).astype(dtype)
        if impl.startswith("fastact"):
            import fastact

            f, t = getattr(fastact, op + "_backward"), _target(impl)
            self.g, self.y = _device(impl, self.g, self.y)
            self.fn = _synced(impl, lambda: f(self.g, self.y, target=t))
            self.fn()
        elif log:
            self.fn = lambda: self.g - np.exp(self.y) * self.g.sum(-1, keepdims=True)
        else:
            self.fn = lambda: self.y * (self.g - (self.g * self.y).sum(-1, keepdims=True))

    def time_backward(self, *args):
        self.fn()


class PReLU:
    """prelu forward and backward (grad_x and grad_weight), NCHW with 64 channels."""

    params = [[*FASTACT, "numpy"], DTYPES]
    param_names = ["impl", "dtype"]

    def setup(self, impl, dtype):
        shape = (2, 8, 4, 4) if TINY else (16, 64, 32, 32)
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal(shape).astype(dtype)
        self.g = rng.standard_normal(shape).astype(dtype)
        self.w = rng.uniform(0, 0.5, shape[1]).astype(dtype)
        if impl.startswith("fastact"):
            import fastact

            t = _target(impl)
            self.x, self.g, self.w = _device(impl, self.x, self.g, self.w)
            self.fwd = _synced(impl, lambda: fastact.prelu(self.x, self.w, target=t))
            self.bwd = _synced(
                impl, lambda: fastact.prelu_backward(self.g, self.x, self.w, target=t)
            )
            self.fwd()
            self.bwd()
        else:
            wb = self.w.reshape(1, -1, 1, 1)

            def bwd():
                neg = self.x <= 0
                gx = np.where(neg, wb * self.g, self.g)
                gw = np.where(neg, self.x * self.g, 0).sum(axis=(0, 2, 3))
                return gx, gw

            self.fwd = lambda: np.where(self.x > 0, self.x, wb * self.x)
            self.bwd = bwd

    def time_prelu(self, *args):
        self.fwd()

    def time_prelu_backward(self, *args):
        self.bwd()


class Maxout:
    """maxout with 4 pieces along the last axis and along axis 1, vs NumPy's reshape + max."""

    params = [[*FASTACT, "numpy"], ["-1", "1"]]
    param_names = ["impl", "axis"]

    def setup(self, impl, axis):
        shape = (4, 16, 8) if TINY else (64, 256, 512)
        self.x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        ax = int(axis)
        if impl.startswith("fastact"):
            import fastact

            t = _target(impl)
            self.x = _device(impl, self.x)
            self.fn = _synced(impl, lambda: fastact.maxout(self.x, 4, axis=ax, target=t))
            self.fn()
        else:
            s = self.x.shape
            ax = ax % self.x.ndim
            new = s[:ax] + (s[ax] // 4, 4) + s[ax + 1 :]
            self.fn = lambda: self.x.reshape(new).max(axis=ax + 1)

    def time_maxout(self, *args):
        self.fn()
