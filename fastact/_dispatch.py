"""Input checks, dtype/out/shape rules and the choice of target. Knows no mathematics.

Every check runs before anything is written, so an error never leaves ``x``, ``out`` or
``grad`` half written.
"""

from __future__ import annotations

import functools

import numpy as np

from . import _cpu, _vmath

TARGETS = ("auto", "cpu", "parallel", "cuda")

# Sizes from which target="auto" runs the parallel loop, by family and pass: the crossovers
# of the serial SIMD and prange loops on 2 cores (omp), float32 in place, that
# scripts/crossover.py measures (a block of calls per target on copies that the caller has
# just written, so the pool's wake-up counts, and the other thread's half comes from the
# caller's cache), at sizes 2^(k/2). The families are seven, per pass (the registry's
# family: one, or a pair). On an AMD Zen 4 with AVX-512 (2 vCPUs of a VM), two runs:
# forward, gelu 16 K ("heaviest"); tanhshrink 12 K, mish, silu 16 K, softplus 16-23 K
# ("heavy"); log_sigmoid 16 K, elu, selu 23 K, tanh 23-32 K, celu 32 K ("transcendental");
# sigmoid 23-46 K ("cheap"); softsign 64 K ("light"); hardsigmoid, hardswish 46-92 K
# ("affine"); the clamps 90-362 K ("linear": hardtanh, hardshrink the last). Backward: gelu'
# 16 K; mish', silu' 16-23 K; tanhshrink' 16 K, softplus' 23 K, sigmoid', tanh' 23-32 K,
# celu' 32 K; log_sigmoid' 23 K, elu' 32 K, selu' 23-64 K; softsign' 64 K; the clamps,
# hardsigmoid' and hardswish' 46-92 K. (Rows where the parallel loop ran 1.5-2x slower at
# every size, now and then on this VM, left out: the other thread not running.) The first
# Zen 4 thresholds, about half these, were measured on copies written long before, and
# "auto" ran up to 1.8x slower than one thread.
_AVX512_ZEN_THRESHOLDS = (
    {"heaviest": 16_384, "heavy": 20_480, "transcendental": 28_672, "cheap": 32_768,
     "light": 57_344, "affine": 73_728, "linear": 196_608},
    {"heaviest": 16_384, "heavy": 20_480, "transcendental": 28_672, "cheap": 32_768,
     "light": 57_344, "linear": 73_728},
)
# Without AVX-512 (AVX2: 8 lanes, 16 registers, no tables) the polynomial kernels take 2-4x
# longer per element, and their costs spread wider: float32 in cache on an AMD Zen 3,
# sigmoid 0.5 ns, tanh and elu 0.6, silu and softplus 0.9-1.0, gelu 1.9. So the families
# there are six, per pass (the registry's family), from the crossovers that
# scripts/crossover.py measured on a Zen 3 (2 vCPUs, omp; the geometric mean of two runs,
# which put a crossover up to 1.4x apart): the size where the parallel loop's time in place
# over the serial one's crosses 1. Forward: gelu 3.7 K ("heaviest"); softplus, mish, silu,
# tanhshrink 5.5-7.8 K ("heavy"); log_sigmoid, celu, selu, tanh, elu 9-13 K; sigmoid 26 K
# ("cheap"); softsign 87 K ("light"); the clamps 190-390 K, hardswish and hardsigmoid with
# them ("linear", "affine"). Backward: gelu' 3.6 K; mish', silu' 4.6-6.5 K; softplus',
# tanhshrink', tanh', sigmoid', celu' 9-11 K; elu', selu', log_sigmoid' 20-26 K; softsign'
# 85 K; the clamps 165-380 K. A step of 1.4x in size moves the ratio by 10-20% near a
# crossover, so a threshold within about 1.2x of a member's crossover keeps "auto" within
# 10% of the better loop; the clamps, whose crossovers spread 2x, are within 1.25x.
_AVX2_THRESHOLDS = (
    {"heaviest": 3_584, "heavy": 6_144, "transcendental": 10_240, "cheap": 24_576,
     "light": 98_304, "affine": 294_912, "linear": 294_912},
    {"heaviest": 3_584, "heavy": 5_632, "transcendental": 10_240, "cheap": 24_576,
     "light": 98_304, "linear": 262_144},
)
# On an Intel Xeon with AVX-512 (LLVM "rocketlake", 2 vCPUs of a VM, omp) the thread pool
# costs more (a parallel call on 64 elements took 3.3 µs, one thread 0.5 µs), and the other
# thread's half of data that the caller has just written comes from the caller's core's
# cache: the cheap kernels pay off in parallel later than on the Zen 4. There the thresholds
# come from the crossovers that scripts/crossover.py measured (two runs, which agreed within
# one step of its sizes). Forward: gelu 16-23 K ("heaviest"); mish 20 K, silu, tanhshrink
# 23-32 K, softplus 33 K ("heavy"); tanh, selu, log_sigmoid 46 K, elu 46-65 K, celu 65-92 K;
# sigmoid 32 K ("cheap"); softsign 46 K ("light"); the clamps, hardsigmoid and hardswish
# 370-520 K ("linear", "affine"). Backward: gelu' 23-32 K; silu', mish' 32 K; tanh',
# tanhshrink' 23-32 K, sigmoid' 32 K, softplus' 46 K, celu' 65-92 K; log_sigmoid' 32-46 K,
# elu', selu' 65 K; softsign' 65 K; the clamps 180-260 K.
_AVX512_INTEL_THRESHOLDS = (
    {"heaviest": 20_480, "heavy": 26_624, "transcendental": 49_152, "cheap": 28_672,
     "light": 45_056, "affine": 450_560, "linear": 450_560},
    {"heaviest": 28_672, "heavy": 34_816, "transcendental": 36_864, "cheap": 53_248,
     "light": 61_440, "linear": 229_376},
)
CPU_KIND = "AVX2" if not _vmath._AVX512 else "AVX-512, AMD Zen" if _cpu.ZEN else "AVX-512, Intel"
PARALLEL_THRESHOLD, BACKWARD_THRESHOLD = {
    "AVX2": _AVX2_THRESHOLDS,
    "AVX-512, AMD Zen": _AVX512_ZEN_THRESHOLDS,
    "AVX-512, Intel": _AVX512_INTEL_THRESHOLDS,
}[CPU_KIND]

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_COMPUTE = {"f2": _F32, "f4": _F32, "f8": _F64}


def is_cuda_array(a) -> bool:
    """A CUDA array, recognised without importing numba.cuda."""
    return hasattr(a, "__cuda_array_interface__") or getattr(a, "__cuda_ndarray__", False) is True


def is_dask_array(a) -> bool:
    return type(a).__module__.startswith("dask.")


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise ValueError(
            f"target={target!r} is not one of {', '.join(repr(t) for t in TARGETS)}"
        )
    return target


def compute_dtype(dtype: np.dtype, what: str) -> np.dtype:
    """The dtype a computation on ``dtype`` runs in: float32 for float16/32, float64 for
    float64, integers and bools; anything else is a ``TypeError``."""
    key = dtype.str[1:]
    if key in _COMPUTE:
        return _COMPUTE[key]
    if dtype.kind in "biu":
        return _F64
    raise TypeError(f"{what} has dtype {dtype}; fastact computes on float32 and float64 arrays")


def as_input(x, what: str = "x") -> np.ndarray:
    """An out-of-place input as an array of float32 or float64 (scalars, lists, ints, bools
    become float64; float16 is computed in float32)."""
    a = x if type(x) is np.ndarray else np.asarray(x)  # subclasses: their data as ndarray
    dt = compute_dtype(a.dtype, what)
    return a if a.dtype == dt else a.astype(dt)


def check_inplace(x, what: str = "x") -> np.ndarray:
    """An array that may be overwritten: float32/float64, writeable."""
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"in-place operation needs a NumPy array for {what}, got {type(x).__name__}"
        )
    if x.dtype not in (_F32, _F64):
        raise TypeError(
            f"in-place operation needs a float32 or float64 array for {what}, "
            f"got dtype {x.dtype}"
        )
    check_writeable(x, what)
    return x


def check_writeable(a: np.ndarray, what: str) -> None:
    if not a.flags.writeable:
        raise ValueError(f"{what} is read-only")


def check_out(out, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """``out`` per NumPy's ufunc rules: an array of exactly ``shape``, writeable, to which
    ``dtype`` casts under 'same_kind'."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a NumPy array, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}, the result has shape {shape}")
    if not np.can_cast(dtype, out.dtype, casting="same_kind"):
        raise TypeError(
            f"cannot write a {dtype} result to out of dtype {out.dtype} (casting='same_kind')"
        )
    check_writeable(out, "out")
    return out


def wrap_result(res: np.ndarray, out, like=None):
    """What a ufunc returns: ``out`` if given; a scalar for a 0-d result; the input's
    ndarray subclass (as a view) for a subclass input."""
    if out is not None:
        return res
    if res.ndim == 0:
        return res[()]
    if like is not None and type(like) is not np.ndarray and isinstance(like, np.ndarray):
        return res.view(type(like))
    return res


def parallel_threshold(family: str, backward: bool = False) -> int:
    """The size from which target="auto" runs the parallel loop (backward: g·f'(x))."""
    return (BACKWARD_THRESHOLD if backward else PARALLEL_THRESHOLD)[family]


def choose_cpu_target(target: str, n: int, family: str, backward: bool = False) -> bool:
    """True for the parallel loop. (For "auto" above the threshold this costs 0.2 µs, with the
    threshold looked up inline and the thread count read straight from the threading layer;
    through ``parallel_threshold`` and a wrapper it cost 0.46 µs, and "auto" ran 4-5% slower
    than "parallel" on the same kernel at 1.4x the threshold.)"""
    if target == "parallel":
        return True
    if target == "cpu":
        return False
    if n < (BACKWARD_THRESHOLD if backward else PARALLEL_THRESHOLD)[family]:
        return False
    return _num_threads() > 1


def _num_threads() -> int:
    """``numba.get_num_threads()`` (``set_num_threads`` applies) in ~0.1 µs instead of ~0.8:
    the first call starts the thread pool, then rebinds this name to the threading layer's
    own counter (a ctypes function), which later calls reach directly."""
    global _num_threads
    import numba

    numba.get_num_threads()
    try:
        from numba.np.ufunc.parallel import _get_num_threads as fast
    except ImportError:  # pragma: no cover - another Numba layout
        fast = numba.get_num_threads
    _num_threads = fast
    return fast()


def _flat(a: np.ndarray, order: str) -> np.ndarray:
    return a.reshape(-1, order=order)


def _common_order(arrays) -> str | None:
    """'C' or 'F' if every array is contiguous in that order (so flat views line up)."""
    if all(a.flags.c_contiguous for a in arrays):
        return "C"
    if all(a.flags.f_contiguous for a in arrays):
        return "F"
    return None


def _detach(inputs: list[np.ndarray], out: np.ndarray) -> list[np.ndarray]:
    """Copies of inputs that overlap ``out`` without being exactly it (NumPy's rule)."""
    res = []
    for a in inputs:
        if a is not out and np.may_share_memory(a, out) and not _same_view(a, out):
            a = a.copy()
        res.append(a)
    return res


def _same_view(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.shape == b.shape
        and a.strides == b.strides
        and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
    )


@functools.lru_cache(maxsize=1024)
def typed_params(params: tuple, dtype: np.dtype) -> tuple:
    """The float parameters as scalars of the compute dtype (no float64 promotion), from a
    cache (building them costs about 1 µs, a 1,000-element call's whole budget). Bounded:
    a parameter that changes every call (a schedule) must not grow the cache forever."""
    key = (params, dtype)
    typed = _TYPED.get(key)
    if typed is None:
        if len(_TYPED) > 1024:
            _TYPED.clear()
        typed = _TYPED[key] = tuple(dtype.type(v) for v in params)
    return typed


_TYPED: dict = {}


def _fast_target(target: str, n: int, family: str, backward: bool = False):
    """True for the parallel loop, False for one thread, None for a target that is not
    "auto", "cpu" or "parallel" (the general path checks it)."""
    if target == "auto" or target == "cpu" or target == "parallel":
        return choose_cpu_target(target, n, family, backward)
    return None


def fast_out(out, like: np.ndarray) -> bool:
    """Whether ``out`` is an array the flat kernels can write as it is: a C-contiguous,
    writeable ndarray of ``like``'s dtype object and shape. (The kernels themselves refuse
    an ``out`` that overlaps an input other than element for element.)"""
    if type(out) is not _NDARRAY or out.dtype is not like.dtype or out.shape != like.shape:
        return False
    flags = out.flags
    return flags.c_contiguous and flags.writeable


def _entry(fn, nin: int, dt, parallel: bool, inplace: bool, arrays, tp):
    """Call the entry point of ``fn``'s flat kernel (``inplace``: the output is the first
    array) on the C-contiguous 1-D ``arrays``, compiling it on first use; return what the
    kernel returns (False from a flat kernel or a two-array in-place one: an input overlaps the
    output other than element for element)."""
    slots = _ENTRY.get((fn, nin))
    if slots is None:
        slots = _ENTRY[fn, nin] = [None] * 8
    slot = (2 if dt is _F64 else 0) + (4 if parallel else 0) + inplace
    entry = slots[slot]
    if entry is None:
        kernel = (_cpu.inplace_kernel if inplace else _cpu.flat_kernel)(fn, nin, parallel)
        done = kernel(*arrays, *tp)  # (compiles it, or loads it from the disk cache)
        slots[slot] = _cpu.entry_point(kernel, dt, len(arrays))
        return done
    return entry(*arrays, tp)


def try_fast_unary(fn, x, out, params: tuple, family: str, target: str):
    """The common case in few instructions: a C-contiguous float32/float64 array, in place,
    into a new array or into a C-contiguous ``out`` of its dtype that does not overlap it;
    target "auto", "cpu" or "parallel". Returns None when the general path is needed (which
    also checks ``target``; and for a float dtype that is not NumPy's canonical object,
    e.g. with metadata: correct, just slower)."""
    if type(x) is not _NDARRAY:
        return None
    dt = x.dtype
    if dt is not _F32 and dt is not _F64:
        return None
    parallel = _fast_target(target, x.size, family)
    if parallel is None:
        return None
    flags = x.flags
    if not flags.c_contiguous:
        return None
    if out is x:
        if not flags.writeable:
            return None
    elif out is not None and not fast_out(out, x):
        return None
    tp = typed_params(params, dt) if params else ()
    flat = x if x.ndim == 1 else x.reshape(-1)
    if out is x:
        _entry(fn, 1, dt, parallel, True, (flat,), tp)
        return x
    res = np.empty(x.shape, x.dtype) if out is None else out
    # (the kernel does nothing if out overlaps x other than element for element)
    if _entry(fn, 1, dt, parallel, False, (flat, res if res.ndim == 1 else res.reshape(-1)), tp):
        return res
    return None


def try_fast_backward(fn, g, x, out, params: tuple, family: str, target: str):
    """``try_fast_unary`` for ``g·fn(x)``: g and x C-contiguous arrays of one float dtype
    and one shape; out None, g itself (in place) or an array that overlaps neither."""
    if type(g) is not _NDARRAY or type(x) is not _NDARRAY:
        return None
    dt = x.dtype
    if (dt is not _F32 and dt is not _F64) or g.dtype is not dt or g.shape != x.shape:
        return None
    parallel = _fast_target(target, x.size, family, backward=True)
    if parallel is None or not (g.flags.c_contiguous and x.flags.c_contiguous):
        return None
    if out is g:
        if not g.flags.writeable:
            return None
    elif out is not None and not fast_out(out, x):
        return None
    tp = typed_params(params, dt) if params else ()
    gf = g if g.ndim == 1 else g.reshape(-1)
    xf = x if x.ndim == 1 else x.reshape(-1)
    # (the kernels do nothing if an input overlaps the output other than element for element)
    if out is g:
        return g if _entry(fn, 2, dt, parallel, True, (gf, xf), tp) else None
    res = np.empty(x.shape, x.dtype) if out is None else out
    rf = res if res.ndim == 1 else res.reshape(-1)
    return res if _entry(fn, 2, dt, parallel, False, (gf, xf, rf), tp) else None


_NDARRAY = np.ndarray

# (formula, number of inputs) -> 8 slots, [dtype (float32 0, float64 2) + parallel (4) + in
# place (1)]: the compiled entry point of the flat kernel, which skips the dispatcher's type
# resolution (~0.5 µs a call); a list index is cheaper than a tuple key.
_ENTRY: dict = {}


class SerialUfuncs:
    """The one-thread ufuncs (``_ufunc_loop.serial_ufunc``) of a formula over ``nin`` inputs
    (x, or g and x for g·f'(x)) with its default parameters, ``f32`` and ``f64`` (None until
    built): ``uf(*inputs)`` into a new array, ``uf(*inputs, out)`` into out (in place when out
    is the first input). NumPy's C code checks the arguments, allocates and applies its
    overlap rules, in about 0.45 µs a call: the public functions' shortest path, which picks
    the ufunc by the identity of the array's dtype (hashing a dtype for a dict lookup cost
    0.05 µs a call). ``default()`` gives (formula, parameters).

    A call that finds no ufunc calls ``warm(dtype)``, which builds it at the ``WARM_CALLS``-th
    such call of float32 or float64 (before that, and for other dtypes, the calls take
    ``try_fast_unary``/``try_fast_backward``: the same kernels). Building the ufunc compiles
    both the flat and the in-place kernel and the loop, 0.5-3 s the first time on a machine;
    a function called a few times does not pay it, a training loop pays it once (later
    processes load all three from the disk cache)."""

    WARM_CALLS = 16

    def __init__(self, default, nin: int = 1):
        self.f32 = self.f64 = None
        self._default = default
        self._nin = nin
        self._calls = {_F32: 0, _F64: 0}

    def warm(self, dt):
        """Count a call of dtype ``dt`` that found no ufunc; the ufunc if it is built now."""
        if dt is not _F32 and dt is not _F64:  # (an equal dtype with metadata, say)
            return None
        calls = self._calls[dt] = self._calls[dt] + 1
        if calls < self.WARM_CALLS:
            return None
        from . import _ufunc_loop

        fn, params = self._default()
        res = _ufunc_loop.serial_ufunc(fn, self._nin, dt, typed_params(params, dt))
        if res is None:  # none can be built here (not x86-64): stop trying
            self._calls[dt] = -(1 << 62)
        elif dt is _F32:
            self.f32 = res
        else:
            self.f64 = res
        return res


def run_cpu(fn, inputs: list[np.ndarray], params: tuple, out: np.ndarray, parallel: bool):
    """Apply formula ``fn`` elementwise (times the first input when there are two) into
    ``out``. Inputs are float arrays of the compute dtype ``dt``; ``out`` was checked."""
    dt = inputs[-1].dtype
    p = typed_params(params, dt)
    # ndarray subclasses (masked arrays, matrices, ...) as plain views: Numba takes only
    # ndarray, and writing through a view writes into the caller's object
    inputs = [a if type(a) is np.ndarray else a.view(np.ndarray) for a in inputs]
    if type(out) is not np.ndarray:
        out = out.view(np.ndarray)
    inputs = _detach(inputs, out)
    same_shape = all(a.shape == out.shape for a in inputs)
    order = _common_order(inputs + [out]) if same_shape else None
    if order is not None and out.dtype == dt:
        flats = [_flat(a, order) for a in inputs]
        if _same_view(inputs[0], out):  # in place on the first array: no alias check
            _cpu.inplace_kernel(fn, len(inputs), parallel)(*flats, *p)
        else:
            _cpu.flat_kernel(fn, len(inputs), parallel)(*flats, _flat(out, order), *p)
        return out
    uf = _cpu.ufunc(fn, len(inputs), len(p), dt)
    res = out
    if not (out.flags.c_contiguous or out.flags.f_contiguous) and not any(
        _same_view(a, out) for a in inputs
    ):
        # Numba's ufunc loop ignores the output's stride when every input is contiguous
        # (writes out[0:n] instead of out[::2], past the array for out[::-1]): compute into a
        # contiguous temporary, then copy (only out of place into a strided out)
        tmp = np.empty(out.shape, dt)
        run_cpu(fn, inputs, params, tmp, parallel)
        np.copyto(out, tmp, casting="same_kind")
        return out
    if any(s < 0 for s in out.strides):
        # Numba's ufunc loops, in place on a view with a reversed axis (x[::-1]), write the
        # wrong elements and past the array (heap corruption): visit the same elements with
        # positive strides instead (elementwise, so the order does not matter).
        flip = tuple(slice(None, None, -1 if s < 0 else 1) for s in out.strides)
        inputs = [np.broadcast_to(a, out.shape)[flip] for a in inputs]
        out = out[flip]
    with np.errstate(all="ignore"):  # special values are handled by the formulas on purpose
        uf(*inputs, *p, out=out, casting="same_kind")
    return res
