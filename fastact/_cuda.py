"""CUDA target: grid-stride kernels built from the same scalar formulas (numba-cuda).

Imported only when a CUDA array or ``target="cuda"`` appears (or by ``python -m fastact
info``), so ``import fastact`` never imports ``numba.cuda``.

How a formula reaches the GPU
-----------------------------
A formula in ``_formulas`` is a CPU ``njit`` dispatcher. numba-cuda would retarget it on its
own when a kernel calls it, but with the CPU's options (``fastmath={"contract"}`` is truthy
there and turns on *all* of CUDA's fast math: ``tanh.approx``, ``div.approx``, flush to
zero) and as a separately compiled device function (which needs a GPU to compile, even for
``compile_ptx``). Instead, ``device_function(fn)`` recompiles the formula's own Python code,
``fn.py_func.__code__``, with its module's globals rebound: every formula of the module
becomes its ``cuda.jit(device=True, inline="always")`` twin and ``_vmath`` becomes
``_cuda_math`` (the same math functions for the GPU). Nothing is copied or rewritten; the
formulas are the CPU's, compiled for the GPU with precise math and inlined before typing.

Kernels are explicit ``@cuda.jit`` grid-stride loops (``@vectorize(target="cuda")`` does not
run under the simulator), one per (formula, number of array inputs, number of parameters,
flat or strided), created lazily and cached; each compiles per dtype on first launch.
"""

from __future__ import annotations

import contextlib
import dis
import functools
import math
import types as pytypes

import numpy as np

try:  # a module global, so that the simulator can swap it inside kernels
    from numba import cuda
except ImportError:  # numba-cuda not installed: available() says so
    cuda = None

THREADS_PER_BLOCK = 256
BLOCKS_PER_SM = 8  # resident 256-thread blocks per SM that keep the memory system busy
_SIM_LAUNCH = (2, 32)  # blocks, threads under the simulator (each thread is a Python thread)

_NO_GPU = (
    "target='cuda' needs numba-cuda and a usable NVIDIA GPU; {why} "
    "(pip install 'fastact[cuda]' on a machine with a GPU, or set NUMBA_ENABLE_CUDASIM=1 "
    "for the slow simulator)"
)


def _no_gpu_reason() -> str | None:
    """None when the CUDA target can run, else why not."""
    if cuda is None:
        return "numba-cuda is not installed"
    try:
        if cuda.is_available():
            return None
    except Exception as e:  # a broken driver install reads as "no GPU"
        return f"the CUDA driver failed ({type(e).__name__}: {e})"
    return "no GPU was found"


@functools.cache
def available() -> bool:
    """Whether numba-cuda is installed and sees a usable GPU (or the simulator is on)."""
    return _no_gpu_reason() is None


def _require_gpu() -> None:
    if not available():
        raise RuntimeError(_NO_GPU.format(why=_no_gpu_reason()))


def simulator() -> bool:
    from numba.cuda import config

    return bool(config.ENABLE_CUDASIM)


# ------------------------------------------------------------ device functions


def _star_callees(mod, funcs: dict) -> set[str]:
    """Names of formulas that some formula calls with ``*args``: Numba's IR inliner cannot
    inline those (\"Calling a closure with *args is unsupported\"), so they stay separate
    device functions (which NVVM still inlines, but whose compilation asks for a GPU)."""
    names = set()
    for py in funcs.values():
        if any(i.opname == "CALL_FUNCTION_EX" for i in dis.get_instructions(py)):
            names.update(n for n in py.__code__.co_names if n in funcs)
    return names


def _build_namespace(modname: str) -> dict:
    """The globals of formula module ``modname`` for the GPU: its dispatchers replaced by
    CUDA device functions compiled from the same code, ``_vmath`` by ``_cuda_math`` (the
    dict is shared, so formulas calling formulas resolve to their twins)."""
    import sys

    from numba.core.dispatcher import Dispatcher

    from . import _cuda_math, _vmath

    mod = sys.modules[modname]
    ns = dict(vars(mod))
    funcs = {
        name: obj.py_func
        for name, obj in vars(mod).items()
        if isinstance(obj, Dispatcher) and obj.py_func.__module__ == modname
    }
    separate = _star_callees(mod, funcs)
    for name, obj in vars(mod).items():
        if obj is _vmath:
            ns[name] = _cuda_math
        elif getattr(obj, "__module__", None) == _vmath.__name__ and callable(obj):
            ns[name] = getattr(_cuda_math, obj.__name__)
    for name, py in funcs.items():
        ns[name] = _twin(py, ns, inline=name not in separate)
    return ns


_namespace = functools.cache(_build_namespace)


def _twin(py, ns: dict, inline: bool = True):
    f = pytypes.FunctionType(py.__code__, ns, py.__name__, py.__defaults__, py.__closure__)
    f.__qualname__, f.__doc__ = py.__qualname__, py.__doc__
    return cuda.jit(device=True, inline="always" if inline else "never")(f)


def device_function(fn, fresh: bool = False):
    """The CUDA device function of formula ``fn`` (a CPU dispatcher of ``_formulas``);
    ``fresh=True`` builds new twins that share no compiled code with the cached ones."""
    py = getattr(fn, "py_func", fn)
    ns = _build_namespace(py.__module__) if fresh else _namespace(py.__module__)
    return ns[py.__name__]


def _nparams(fn) -> int:
    return getattr(fn, "py_func", fn).__code__.co_argcount - 1


# ---------------------------------------------------------------------- kernels


def _flat_body(f, nin: int, nparams: int):
    """out[i] = f(x[i], *p) or g[i] * f(x[i], *p) over 1-D arrays, grid-stride."""
    # Fixed arities, because a CUDA kernel cannot take *args.
    if nin == 1 and nparams == 0:

        def k(x, out):
            for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
                out[i] = f(x[i])

    elif nin == 1 and nparams == 1:

        def k(x, out, a):
            for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
                out[i] = f(x[i], a)

    elif nin == 1 and nparams == 2:

        def k(x, out, a, b):
            for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
                out[i] = f(x[i], a, b)

    elif nin == 2 and nparams == 0:

        def k(g, x, out):
            for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
                out[i] = g[i] * f(x[i])

    elif nin == 2 and nparams == 1:

        def k(g, x, out, a):
            for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
                out[i] = g[i] * f(x[i], a)

    elif nin == 2 and nparams == 2:

        def k(g, x, out, a, b):
            for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
                out[i] = g[i] * f(x[i], a, b)

    else:
        raise NotImplementedError(f"no CUDA kernel for {nin} inputs and {nparams} parameters")
    return k


def _tuple_setitem():
    if simulator():
        return lambda t, i, v: t[:i] + (v,) + t[i + 1 :]
    from numba.cuda.cpython.unsafe.tuple import tuple_setitem

    return tuple_setitem


def _strided_body(f, nin: int, nparams: int):
    """The same over n-d arrays of any strides: the flat index is unravelled per element."""
    setitem = _tuple_setitem()

    def index(t, shape):
        idx = shape
        for d in range(len(shape) - 1, -1, -1):
            idx = setitem(idx, d, t % shape[d])
            t //= shape[d]
        return idx

    index = cuda.jit(device=True, inline="always")(index)

    if nin == 1 and nparams == 0:

        def k(x, out):
            for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
                j = index(i, x.shape)
                out[j] = f(x[j])

    elif nin == 1 and nparams == 1:

        def k(x, out, a):
            for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
                j = index(i, x.shape)
                out[j] = f(x[j], a)

    elif nin == 1 and nparams == 2:

        def k(x, out, a, b):
            for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
                j = index(i, x.shape)
                out[j] = f(x[j], a, b)

    elif nin == 2 and nparams == 0:

        def k(g, x, out):
            for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
                j = index(i, x.shape)
                out[j] = g[j] * f(x[j])

    elif nin == 2 and nparams == 1:

        def k(g, x, out, a):
            for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
                j = index(i, x.shape)
                out[j] = g[j] * f(x[j], a)

    elif nin == 2 and nparams == 2:

        def k(g, x, out, a, b):
            for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
                j = index(i, x.shape)
                out[j] = g[j] * f(x[j], a, b)

    else:
        raise NotImplementedError(f"no CUDA kernel for {nin} inputs and {nparams} parameters")
    return k


def kernel_source(fn, nin: int, strided: bool = False, fresh: bool = False):
    """The Python function of the kernel for formula ``fn`` (what ``compile_ptx`` takes)."""
    body = _strided_body if strided else _flat_body
    k = body(device_function(fn, fresh), nin, _nparams(fn))
    name = getattr(fn, "__name__", "f")
    k.__name__ = k.__qualname__ = f"fastact_{name}_n{nin}{'_strided' if strided else ''}"
    return k


@functools.cache
def kernel(fn, nin: int, strided: bool = False):
    """The ``@cuda.jit`` grid-stride kernel of formula ``fn``: one dispatcher per (formula,
    number of array inputs, flat or strided), compiled per dtype on its first launch."""
    return cuda.jit(kernel_source(fn, nin, strided))


def kernel_signature(fn, nin: int, dtype, strided: bool = False) -> tuple:
    """Numba argument types of the kernel for ``dtype`` (for ``compile_ptx``)."""
    from numba import from_dtype

    t = from_dtype(np.dtype(dtype))
    arr = t[:] if strided else t[::1]
    return (arr,) * (nin + 1) + (t,) * _nparams(fn)


@contextlib.contextmanager
def _device_cc(cc):
    """Compile separate (non-inlined) device functions for ``cc`` without asking the driver.

    numba-cuda 0.30 compiles a called device function for the *current device's* compute
    capability, even inside ``compile_ptx(..., cc=...)``, and so needs a GPU. Inlined
    functions (all of ours but the targets of ``f(*args)`` calls) never get there; for the
    others this stands in a device of capability ``cc`` while ``compile_ptx`` runs, on fresh
    twins whose compiled code is thrown away afterwards.
    """
    from numba.cuda import dispatcher

    real = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=cc, id=0)
    try:
        yield
    finally:
        dispatcher.get_current_device = real


def compile_ptx(fn, nin: int, dtype=np.float32, cc=(9, 0), strided: bool = False) -> str:
    """PTX of the kernel of ``fn`` for ``dtype`` and compute capability ``cc`` (no GPU needed)."""
    with _device_cc(cc):
        ptx, _ = cuda.compile_ptx(
            kernel_source(fn, nin, strided, fresh=True),
            kernel_signature(fn, nin, dtype, strided),
            cc=cc,
        )
    return ptx


def device_return_type(fn, dtype=np.float32, cc=(9, 0)):
    """(PTX, Numba return type) of the device function of ``fn`` for ``dtype``."""
    from numba import from_dtype

    t = from_dtype(np.dtype(dtype))
    dev = device_function(fn, fresh=True)
    with _device_cc(cc):
        return cuda.compile_ptx(dev.py_func, (t,) * (1 + _nparams(fn)), device=True, cc=cc)


# --------------------------------------------------------------- launch config


@functools.cache
def _sm_count(device_id: int) -> int:
    return int(cuda.get_current_device().MULTIPROCESSOR_COUNT)


def launch_config(n: int) -> tuple[int, int]:
    """(blocks, threads): 256 threads, blocks a multiple of the SM count (8 per SM), never
    more than the elements need; a small fixed grid under the simulator."""
    if simulator():
        blocks, threads = _SIM_LAUNCH
    else:
        threads = THREADS_PER_BLOCK
        blocks = BLOCKS_PER_SM * _sm_count(cuda.get_current_device().id)
    return max(1, min(blocks, math.ceil(n / threads))), threads


# -------------------------------------------------------------------- arrays


def _lib(a) -> str:
    mod = type(a).__module__.split(".")[0]
    return mod if mod in ("cupy", "torch") else "numba"


def _as_device(a, what: str):
    """A numba device array viewing CUDA array ``a`` (zero-copy)."""
    if getattr(a, "__cuda_ndarray__", False) is True:
        return a
    if hasattr(a, "__cuda_array_interface__"):
        return cuda.as_cuda_array(a)
    raise TypeError(f"{what} must be a CUDA array, got {type(a).__name__}")


def _readonly(a) -> bool:
    cai = getattr(a, "__cuda_array_interface__", None)
    return bool(cai and cai.get("data", (0, False))[1])


def _check_dtype(dt: np.dtype, what: str) -> None:
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(
            f"{what} has dtype {dt}; fastact's CUDA target computes on float32 and float64 "
            "device arrays"
        )


def _empty_like(a, dev):
    """An uninitialised result of ``dev``'s shape and dtype, of ``a``'s library, with a
    numba view of it: (result, view)."""
    lib = _lib(a)
    if lib == "cupy":
        import cupy

        res = cupy.empty(dev.shape, dtype=dev.dtype, order="F" if _f_only(dev) else "C")
        return res, cuda.as_cuda_array(res)
    if lib == "torch":
        import torch

        res = torch.empty_like(a, memory_format=torch.contiguous_format)
        return res, cuda.as_cuda_array(res)
    res = cuda.device_array(dev.shape, dtype=dev.dtype, order="F" if _f_only(dev) else "C")
    return res, res


def _f_only(d) -> bool:
    return d.ndim > 1 and d.is_f_contiguous() and not d.is_c_contiguous()


def _stream(stream):
    """A numba stream from None, a numba stream, a CuPy or torch stream, or a raw handle."""
    if stream is None:
        return cuda.default_stream()
    for attr in ("cuda_stream", "ptr"):  # torch.cuda.Stream, cupy.cuda.Stream
        if hasattr(stream, attr) and not hasattr(stream, "handle"):
            return cuda.external_stream(int(getattr(stream, attr)))
    if isinstance(stream, int):
        return cuda.external_stream(stream) if stream else cuda.default_stream()
    return stream


# ----------------------------------------------------------------------- run


def launch(fn, dev_inputs: list, dev_out, params: tuple, stream) -> None:
    """Launch formula ``fn`` over numba device arrays of one shape and dtype."""
    n = dev_out.size
    if n == 0:
        return
    dt = dev_out.dtype
    p = tuple(dt.type(v) for v in params)
    arrays = list(dev_inputs) + [dev_out]
    order = None
    if all(a.is_c_contiguous() for a in arrays):
        order = "C"
    elif all(a.is_f_contiguous() for a in arrays):
        order = "F"
    if order is not None:
        arrays = [a.reshape(n, order=order) if a.ndim != 1 else a for a in arrays]
        k = kernel(fn, len(dev_inputs), False)
    elif all(a.ndim == 1 for a in arrays):
        k = kernel(fn, len(dev_inputs), False)  # strided 1-D indexes directly
    else:
        k = kernel(fn, len(dev_inputs), True)
    blocks, threads = launch_config(n)
    k[blocks, threads, stream](*arrays, *p)


def run(fn, inputs, params, out=None, inplace=False, stream=None):
    """Apply formula ``fn`` on the GPU: ``fn(x, *params)`` for ``inputs == [x]``,
    ``grad * fn(v, *params)`` for ``inputs == [grad, v]``.

    CUDA arrays (numba device arrays, CuPy, PyTorch, any ``__cuda_array_interface__``) are
    used in place, zero-copy, and the result is an array of the input's library on the
    device. Host arrays are copied over and back and the result is a NumPy array.
    """
    _require_gpu()
    if any(_is_cuda(a) for a in inputs) or (out is not None and _is_cuda(out)):
        return _run_device(fn, inputs, params, out, inplace, stream)
    return _run_host(fn, inputs, params, out, inplace, stream)


def _is_cuda(a) -> bool:
    from ._dispatch import is_cuda_array

    return is_cuda_array(a)


def _run_device(fn, inputs, params, out, inplace, stream):
    names = ["x"] if len(inputs) == 1 else ["grad", "x"]
    devs = []
    for a, what in zip(inputs, names, strict=True):
        if _is_cuda(a):
            d = _as_device(a, what)
        else:  # a host operand next to a device one: copy it over
            from ._dispatch import as_input

            d = cuda.to_device(np.ascontiguousarray(as_input(a, what)))
        _check_dtype(np.dtype(d.dtype), what)
        devs.append(d)
    if len(devs) == 2:
        if devs[0].shape != devs[1].shape:
            raise ValueError(
                f"grad of shape {devs[0].shape} and x of shape {devs[1].shape} differ; the "
                "CUDA target does not broadcast"
            )
        if devs[0].dtype != devs[1].dtype:
            raise TypeError(
                f"grad ({devs[0].dtype}) and x ({devs[1].dtype}) must have the same dtype on "
                "the CUDA target"
            )
    first = next(a for a in inputs if _is_cuda(a))
    if inplace:
        if not _is_cuda(inputs[0]):
            raise TypeError("in-place on the CUDA target needs a CUDA array")
        if _readonly(inputs[0]):
            raise ValueError("x is read-only")
        res, dres = inputs[0], devs[0]
    elif out is not None:
        if not _is_cuda(out):
            raise TypeError(
                f"out must be a CUDA array when the inputs are on the GPU, got {type(out).__name__}"
            )
        dres = _as_device(out, "out")
        if tuple(dres.shape) != tuple(devs[-1].shape):
            raise ValueError(f"out has shape {dres.shape}, the result has shape {devs[-1].shape}")
        if dres.dtype != devs[-1].dtype:
            raise TypeError(
                f"out has dtype {dres.dtype}, the result {devs[-1].dtype}; the CUDA target "
                "writes the input's dtype"
            )
        if _readonly(out):
            raise ValueError("out is read-only")
        res = out
    else:
        res, dres = _empty_like(first, devs[-1])
    launch(fn, devs, dres, params, _stream(stream))
    return res


def _run_host(fn, inputs, params, out, inplace, stream):
    """Host arrays with target='cuda': validate as on the CPU, copy over, run, copy back."""
    from . import _dispatch as D

    s = _stream(stream)
    if inplace:
        a = D.check_inplace(inputs[0])
        arrays, shape, dt = [a], a.shape, a.dtype
    elif len(inputs) == 1:
        a = D.as_input(inputs[0])
        arrays, shape, dt = [a], a.shape, a.dtype
    else:
        g, a = D.as_input(inputs[0], "grad"), D.as_input(inputs[1], "x")
        dt = np.promote_types(g.dtype, a.dtype)
        try:
            shape = np.broadcast_shapes(g.shape, a.shape)
        except ValueError:
            raise ValueError(
                f"grad of shape {g.shape} and x of shape {a.shape} do not broadcast"
            ) from None
        arrays = [np.broadcast_to(b.astype(dt, copy=False), shape) for b in (g, a)]
    if out is not None and not inplace:
        D.check_out(out, shape, dt)
    devs = [cuda.to_device(np.ascontiguousarray(b), stream=s) for b in arrays]
    dres = devs[0] if inplace else cuda.device_array(shape, dtype=dt, stream=s)
    launch(fn, devs, dres, params, s)
    host = dres.copy_to_host(stream=s)
    s.synchronize()
    if inplace:
        inputs[0][...] = host
        return inputs[0]
    if out is not None:
        np.copyto(out, host, casting="same_kind")
        return out
    return host[()] if host.ndim == 0 else host


def nonelementwise(name, *args, **kwargs):
    """prelu, maxout, softmax and log_softmax (and their backward passes) on the GPU: the
    public function ``name`` with its own arguments; see ``_cuda_nonelementwise``."""
    _require_gpu()
    from . import _cuda_nonelementwise

    return _cuda_nonelementwise.nonelementwise(name, *args, **kwargs)
