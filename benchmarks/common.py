"""The grid, the data and the implementations that every benchmark class shares.

Parameters are strings, the same on every machine; a cell that an implementation or the
machine cannot run raises ``NotImplementedError`` in ``setup`` (asv records it as skipped).

``FASTACT_ASV_GRID=tiny`` shrinks the sizes to a few thousand elements: the smoke test
(``tests/test_benchmarks.py``) sets it to run every class once in seconds. Other benchmark
modules should take their sizes from ``sizes()`` so that they shrink too.
"""

from __future__ import annotations

import functools
import os

import numpy as np

import fastact

from . import references as R

TINY = os.environ.get("FASTACT_ASV_GRID", "") == "tiny"

ACTIVATIONS = list(fastact.ACTIVATIONS)
FASTACT_TARGETS = {"fastact-cpu": "cpu", "fastact-parallel": "parallel", "fastact-cuda": "cuda"}
IMPLS = [*FASTACT_TARGETS, "numpy", "scipy", "torch"]
DTYPES = ["float32", "float64"]


def sizes(*labels: str) -> list[str]:
    """Size labels like ``"1e6"`` (``n = int(float(label))``); ``["1e3"]`` on the tiny grid."""
    return ["1e3"] if TINY else list(labels)


def size(label: str) -> int:
    return int(float(label))


# ------------------------------------------------------------------ data
_BLOCK = 10_000


@functools.cache
def _block(dtype: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if seed == 0:  # activation inputs: both branches of every activation
        v = rng.standard_normal(_BLOCK) * 3
    else:  # incoming gradients
        v = rng.uniform(-1, 1, _BLOCK)
    return v.astype(dtype)


def fill(a: np.ndarray, seed: int = 0) -> np.ndarray:
    """Write the seeded data into ``a`` (a block of 10^4 values, tiled: no second array of
    the size of ``a`` is made, so 10^8 elements stay cheap to refill between samples)."""
    b = _block(a.dtype.name, seed)
    n = a.size
    if n <= _BLOCK:
        a[...] = b[:n]
    elif n % _BLOCK == 0:
        a.reshape(-1, _BLOCK)[...] = b
    else:
        a[...] = np.resize(b, n)
    return a


def array(n: int, dtype: str, seed: int = 0) -> np.ndarray:
    return fill(np.empty(n, dtype), seed)


_BUFFERS: dict = {}


def buffer(role: str, n: int, dtype: str, seed: int = 0) -> np.ndarray:
    """A filled array kept for the life of the process, so ``setup`` (which asv re-runs
    between samples) stays cheap."""
    key = (role, n, dtype, seed)
    if key not in _BUFFERS:
        _BUFFERS[key] = array(n, dtype, seed)
    return _BUFFERS[key]


# ------------------------------------------------------------------ CUDA, detected lazily
@functools.cache
def cuda_available() -> bool:
    """numba-cuda installed and a GPU (or its simulator) usable; imports ``numba.cuda`` only
    when a CUDA cell is set up, never at module import."""
    from fastact import _cuda

    return _cuda.available()


def require_cuda() -> None:
    if not cuda_available():
        raise NotImplementedError("no usable CUDA GPU (or numba-cuda is not installed)")


# ------------------------------------------------------------------ implementations
class Impl:
    """One implementation of one activation: ``forward_(x)`` overwrites ``x``;
    ``grad(x, out)`` and ``backward(g, x, out)`` may write ``out`` or return a new array.
    ``to_native`` turns a host array into what the callables take; ``sync`` waits for the
    device. Construction raises ``NotImplementedError`` for a cell that cannot run."""

    kinds = ("forward_", "grad", "backward")

    def __init__(self, impl: str, name: str):
        self.impl, self.name = impl, name

    def to_native(self, a):
        return a

    def sync(self):
        pass

    def forward_(self, x):
        raise NotImplementedError(f"{self.impl} has no in-place {self.name}")

    def grad(self, x, out):
        raise NotImplementedError(f"{self.impl} has no {self.name} derivative")

    def backward(self, g, x, out):
        raise NotImplementedError(f"{self.impl} has no {self.name} backward")

    lenient = False  # whether a failure of the first call means "cannot run here"

    def prepare(self, kind: str):
        """Check that ``kind`` exists here, before any data is made."""
        if kind not in self.kinds:
            raise NotImplementedError(f"{self.impl} has no {kind} of {self.name}")

    def saved(self, x):
        """What ``backward`` reads besides the gradient, made from the input (not timed)."""
        return x


class Fastact(Impl):
    def __init__(self, impl, name, target=None):
        super().__init__(impl, name)
        self.target = target or FASTACT_TARGETS[impl]
        if self.target == "cuda":
            require_cuda()
        self.act = fastact.ACTIVATIONS[name]
        self.lenient = self.target == "cuda"  # the CUDA target may not be built yet

    def to_native(self, a):
        if self.target == "cuda":
            from numba import cuda

            return cuda.to_device(a)
        return a

    def sync(self):
        if self.target == "cuda":
            from numba import cuda

            cuda.synchronize()

    def forward_(self, x):
        return self.act.forward_(x, target=self.target)

    def grad(self, x, out):
        return self.act.grad(x, out=out, target=self.target)

    def backward(self, g, x, out):
        return self.act.backward(g, x, out=out, target=self.target)


class Numpy(Impl):
    """The plain NumPy formula; the in-place form stores it back (``x[...] = f(x)``)."""

    def __init__(self, impl, name):
        super().__init__(impl, name)
        self.f, self.fp = R.NUMPY[name]

    def forward_(self, x):
        x[...] = self.f(x)
        return x

    def grad(self, x, out):
        return self.fp(x)

    def backward(self, g, x, out):
        return g * self.fp(x)


class Scipy(Impl):
    lenient = True  # a function this SciPy lacks

    def __init__(self, impl, name):
        super().__init__(impl, name)
        table = R.scipy_table()
        if name not in table:
            raise NotImplementedError(f"scipy.special has no {name}")
        self.f_, self.fp = table[name]

    def forward_(self, x):
        return self.f_(x)

    def grad(self, x, out):
        return self.fp(x)

    def backward(self, g, x, out):
        return g * self.fp(x)


class Torch(Impl):
    """PyTorch's CPU functions on tensors sharing the NumPy arrays' memory."""

    kinds = ("forward_", "backward")  # no derivative-only function in PyTorch
    lenient = True  # an operator this PyTorch lacks

    def __init__(self, impl, name):
        super().__init__(impl, name)
        self.torch = R.torch_module()
        self._name = name

    def prepare(self, kind):
        super().prepare(kind)
        if kind == "forward_":
            self.f_ = R.torch_forward_(self._name)
        elif kind == "backward":
            self._saved, self.bw = R.torch_backward(self._name)

    def to_native(self, a):
        return self.torch.from_numpy(a)

    def saved(self, x):
        return self._saved(x)

    def forward_(self, x):
        return self.f_(x)

    def backward(self, g, x, out):
        return self.bw(g, x)


_IMPLS = {"numpy": Numpy, "scipy": Scipy, "torch": Torch}


def make_impl(impl: str, name: str, kind: str) -> Impl:
    """The implementation ``impl`` of activation ``name``, ready for ``kind``; raises
    ``NotImplementedError`` when the cell cannot run here."""
    cls = Fastact if impl.startswith("fastact-") else _IMPLS.get(impl)
    if cls is None:
        raise NotImplementedError(f"unknown implementation {impl!r}")
    obj = cls(impl, name)
    obj.prepare(kind)
    return obj


_WARM: set = set()


def warm(key, call, lenient: bool = False) -> None:
    """Run ``call`` once per process and key: compiles (or loads from the disk cache) a
    kernel outside the timer. With ``lenient`` (CUDA cells, optional peers) a failure means
    the cell cannot run here and is skipped; otherwise it fails the benchmark, loudly."""
    if key in _WARM:
        return
    try:
        call()
    except NotImplementedError:
        raise
    except (RuntimeError, TypeError, ValueError, AttributeError) as e:
        if not lenient:
            raise
        # e.g. the CUDA target not built yet, or an operator missing in this PyTorch
        raise NotImplementedError(f"{key}: {type(e).__name__}: {e}") from None
    _WARM.add(key)
