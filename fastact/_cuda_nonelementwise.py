"""CUDA kernels of the non-elementwise activations: softmax, log-softmax (and their backward
passes from the output), PReLU (forward, derivative, backward with the weight gradient) and
maxout (forward, backward). Reached through ``_cuda.nonelementwise(name, *args, **kwargs)``
with the arguments of the public function; imported only then.

Kernels index the arrays with n-d index tuples, so any axis and any strides work without a
copy; arrays that are all C- (or all F-) contiguous are first folded, zero-copy, into
``(P, n, Q)`` around the axis (fewer index operations, fewer compiled variants).

- softmax family, rows (the axis has the smallest stride): a *segment* of ``tpr`` threads
  per row (a warp for short rows, the whole 256-thread block for long ones), several rows
  per block; per row a max, then a sum of e^(x - m) (or of g·y, g), each reduced in shared
  memory, then one writing pass. Every element is read and written by the same thread and
  the reductions end with a barrier, so in place (``out=x``, ``out=grad``) is safe.
- softmax family, columns (the axis is not the innermost dimension and there are many
  rows): one thread per row, serial along the axis; neighbouring threads read neighbouring
  addresses, so the loads coalesce.
- maxout forward/backward and PReLU forward/derivative: grid-stride loops, one thread per
  output element (per group for maxout).
- PReLU backward: each block takes a contiguous range of elements (threads stride by the
  block, so loads coalesce); a thread sums its weight-gradient terms in a register while
  the channel stays the same, then adds the run to a per-block shared-memory accumulator
  (``cuda.atomic.add``); at the end the block adds its accumulators to the global gradient
  (one atomic per touched channel and block). More than ``MAX_SHARED_CHANNELS`` channels
  go to global atomics directly. The summation order is therefore not fixed.

float32 kernels compute in float32 (``T = np.float32`` is baked into each kernel; exp and
log1p are ``_cuda_math``'s libdevice calls); ``compile_ptx`` audits that without a GPU.
Semantics, checks and error messages are the CPU functions' (``_softmax``,
``_prelu_maxout``): every check runs before anything is written.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from . import _cuda
from . import _dispatch as D
from . import _formulas as F
from . import _nelayout as L
from ._cuda import cuda

MAX_SHARED_CHANNELS = 1024  # PReLU backward: channels accumulated in shared memory
_COLS_MIN_ROWS = 2048  # rows from which a strided-axis softmax runs one thread per row
_SIM_COLS_MIN_ROWS = 8  # the same under the simulator (small tests reach both kernels)
_NEG_INF = -math.inf


def _block() -> int:
    """Threads per block: the elementwise target's (a small block under the simulator)."""
    return _cuda._SIM_LAUNCH[1] if _cuda.simulator() else _cuda.THREADS_PER_BLOCK


def _min_tpr() -> int:
    return 4 if _cuda.simulator() else 32


# ------------------------------------------------------------------ device helpers
@functools.cache
def _helpers():
    """(unravel, row_base, setitem) device functions."""
    setitem = _cuda._tuple_setitem()
    dev = cuda.jit(device=True, inline="always")

    def unravel(t, shape):
        """The C-order index tuple of flat index t."""
        idx = shape
        for d in range(len(shape) - 1, -1, -1):
            idx = setitem(idx, d, t % shape[d])
            t //= shape[d]
        return idx

    def row_base(r, shape, axis):
        """Index tuple of the first element of row r (rows in C order over the other axes)."""
        idx = shape
        for d in range(len(shape) - 1, -1, -1):
            nd = shape[d] if d != axis else 1
            idx = setitem(idx, d, r % nd)
            r //= nd
        return idx

    return dev(unravel), dev(row_base), setitem


@functools.cache
def _reducers(block: int):
    """seg_max, seg_sum: reduce ``v`` over the segment of ``tpr`` threads starting at thread
    ``seg0`` through the shared array ``sh``; every thread of the block must call them."""
    dev = cuda.jit(device=True, inline="always")

    def seg_max(sh, tid, seg0, lane, tpr, v):
        sh[tid] = v
        cuda.syncthreads()
        s = tpr // 2
        while s > 0:
            if lane < s:
                a = sh[tid]
                b = sh[tid + s]
                sh[tid] = b if b > a else a
            cuda.syncthreads()
            s //= 2
        r = sh[seg0]
        cuda.syncthreads()
        return r

    def seg_sum(sh, tid, seg0, lane, tpr, v):
        sh[tid] = v
        cuda.syncthreads()
        s = tpr // 2
        while s > 0:
            if lane < s:
                sh[tid] = sh[tid] + sh[tid + s]
            cuda.syncthreads()
            s //= 2
        r = sh[seg0]
        cuda.syncthreads()
        return r

    return dev(seg_max), dev(seg_sum)


def _cm():
    from . import _cuda_math

    return _cuda_math


# ------------------------------------------------------------------ kernel sources
def _softmax_rows_src(log: bool, dtype, block: int):
    """k(x, out, axis, tpr): softmax / log-softmax, a segment of tpr threads per row."""
    T = np.dtype(dtype).type
    _, row_base, setitem = _helpers()
    seg_max, seg_sum = _reducers(block)
    exp, log1p = _cm().exp, _cm().log1p
    neg_inf = _NEG_INF

    def k(x, out, axis, tpr):
        sh = cuda.shared.array(block, T)
        tid = cuda.threadIdx.x
        lane = tid % tpr
        seg0 = tid - lane
        rpb = block // tpr
        n = x.shape[axis]
        R = x.size // n
        for gi in range(cuda.blockIdx.x, (R + rpb - 1) // rpb, cuda.gridDim.x):
            r = gi * rpb + tid // tpr
            active = r < R
            base = row_base(r if active else 0, x.shape, axis)
            m = T(neg_inf)
            if active:
                for j in range(lane, n, tpr):
                    v = x[setitem(base, axis, j)]
                    m = v if v > m else m
            m = seg_max(sh, tid, seg0, lane, tpr, m)
            s = T(0)
            if active:
                for j in range(lane, n, tpr):
                    s += exp(x[setitem(base, axis, j)] - m)
            s = seg_sum(sh, tid, seg0, lane, tpr, s)
            if active:
                if log:
                    c = log1p(s - T(1))
                    for j in range(lane, n, tpr):
                        i = setitem(base, axis, j)
                        out[i] = (x[i] - m) - c
                else:
                    rs = T(1) / s
                    for j in range(lane, n, tpr):
                        i = setitem(base, axis, j)
                        out[i] = exp(x[i] - m) * rs

    k.__name__ = k.__qualname__ = f"fastact_{'log_' if log else ''}softmax_rows"
    return k


def _softmax_cols_src(log: bool, dtype):
    """k(x, out, axis): softmax / log-softmax, one thread per row."""
    T = np.dtype(dtype).type
    _, row_base, setitem = _helpers()
    exp, log1p = _cm().exp, _cm().log1p
    neg_inf = _NEG_INF

    def k(x, out, axis):
        n = x.shape[axis]
        for r in range(cuda.grid(1), x.size // n, cuda.gridsize(1)):
            base = row_base(r, x.shape, axis)
            m = T(neg_inf)
            for j in range(n):
                v = x[setitem(base, axis, j)]
                m = v if v > m else m
            s = T(0)
            for j in range(n):
                s += exp(x[setitem(base, axis, j)] - m)
            if log:
                c = log1p(s - T(1))
                for j in range(n):
                    i = setitem(base, axis, j)
                    out[i] = (x[i] - m) - c
            else:
                rs = T(1) / s
                for j in range(n):
                    i = setitem(base, axis, j)
                    out[i] = exp(x[i] - m) * rs

    k.__name__ = k.__qualname__ = f"fastact_{'log_' if log else ''}softmax_cols"
    return k


def _softmax_bwd_rows_src(log: bool, dtype, block: int):
    """k(g, y, out, axis, tpr): softmax: y(g - Σgy); log-softmax: g - e^y Σg."""
    T = np.dtype(dtype).type
    _, row_base, setitem = _helpers()
    _, seg_sum = _reducers(block)
    exp = _cm().exp

    def k(g, y, out, axis, tpr):
        sh = cuda.shared.array(block, T)
        tid = cuda.threadIdx.x
        lane = tid % tpr
        seg0 = tid - lane
        rpb = block // tpr
        n = y.shape[axis]
        R = y.size // n
        for gi in range(cuda.blockIdx.x, (R + rpb - 1) // rpb, cuda.gridDim.x):
            r = gi * rpb + tid // tpr
            active = r < R
            base = row_base(r if active else 0, y.shape, axis)
            s = T(0)
            if active:
                for j in range(lane, n, tpr):
                    i = setitem(base, axis, j)
                    s += g[i] if log else g[i] * y[i]
            s = seg_sum(sh, tid, seg0, lane, tpr, s)
            if active:
                for j in range(lane, n, tpr):
                    i = setitem(base, axis, j)
                    gv = g[i]
                    yv = y[i]
                    out[i] = gv - exp(yv) * s if log else yv * (gv - s)

    k.__name__ = k.__qualname__ = f"fastact_{'log_' if log else ''}softmax_bwd_rows"
    return k


def _softmax_bwd_cols_src(log: bool, dtype):
    T = np.dtype(dtype).type
    _, row_base, setitem = _helpers()
    exp = _cm().exp

    def k(g, y, out, axis):
        n = y.shape[axis]
        for r in range(cuda.grid(1), y.size // n, cuda.gridsize(1)):
            base = row_base(r, y.shape, axis)
            s = T(0)
            for j in range(n):
                i = setitem(base, axis, j)
                s += g[i] if log else g[i] * y[i]
            for j in range(n):
                i = setitem(base, axis, j)
                gv = g[i]
                yv = y[i]
                out[i] = gv - exp(yv) * s if log else yv * (gv - s)

    k.__name__ = k.__qualname__ = f"fastact_{'log_' if log else ''}softmax_bwd_cols"
    return k


def _maxout_src(dtype):
    """k(x, out, axis, kp): out = max over groups of kp along axis; NaN wins, as np.max."""
    unravel, _, setitem = _helpers()

    def k(x, out, axis, kp):
        for t in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            idx = unravel(t, out.shape)
            g0 = idx[axis] * kp
            m = x[setitem(idx, axis, g0)]
            for j in range(1, kp):
                v = x[setitem(idx, axis, g0 + j)]
                if v > m or (v != v and m == m):
                    m = v
            out[idx] = m

    k.__name__ = k.__qualname__ = "fastact_maxout"
    return k


def _maxout_bwd_src(dtype):
    """k(g, x, out, axis, kp): each gradient to the first arg-max of its group."""
    T = np.dtype(dtype).type
    unravel, _, setitem = _helpers()

    def k(g, x, out, axis, kp):
        for t in range(cuda.grid(1), g.size, cuda.gridsize(1)):
            idx = unravel(t, g.shape)
            g0 = idx[axis] * kp
            best = 0
            m = x[setitem(idx, axis, g0)]
            for j in range(1, kp):
                v = x[setitem(idx, axis, g0 + j)]
                if v > m or (v != v and m == m):
                    m = v
                    best = j
            gv = g[idx]
            for j in range(kp):
                out[setitem(idx, axis, g0 + j)] = gv if j == best else T(0)

    k.__name__ = k.__qualname__ = "fastact_maxout_bwd"
    return k


def _prelu_src(grad: bool, dtype, fresh: bool = False):
    """k(x, w, out, cax, per): prelu or prelu' with weight w[idx[cax] * per]."""
    f = _cuda.device_function(F.leaky_relu_grad if grad else F.leaky_relu, fresh)
    unravel, _, _ = _helpers()

    def k(x, w, out, cax, per):
        for t in range(cuda.grid(1), x.size, cuda.gridsize(1)):
            idx = unravel(t, x.shape)
            out[idx] = f(x[idx], w[idx[cax] * per])

    k.__name__ = k.__qualname__ = f"fastact_prelu{'_grad' if grad else ''}"
    return k


def _prelu_bwd_src(dtype, block: int, fresh: bool = False):
    """k(g, x, w, out, gw, cax, per, chunk): out = g·prelu'(x); gw[c] += Σ (x > 0 ? 0 : x·g)
    over the elements of channel c; gw must hold zeros."""
    T = np.dtype(dtype).type
    fgrad = _cuda.device_function(F.leaky_relu_grad, fresh)
    unravel, _, _ = _helpers()
    maxc = MAX_SHARED_CHANNELS

    def k(g, x, w, out, gw, cax, per, chunk):
        sh = cuda.shared.array(maxc, T)
        tid = cuda.threadIdx.x
        C = gw.size
        shared = C <= maxc
        if shared:
            for c in range(tid, C, block):
                sh[c] = T(0)
        cuda.syncthreads()
        n = x.size
        for b in range(cuda.blockIdx.x, (n + chunk - 1) // chunk, cuda.gridDim.x):
            cur = -1
            acc = T(0)
            for t in range(b * chunk + tid, min(n, b * chunk + chunk), block):
                idx = unravel(t, x.shape)
                c = idx[cax] * per
                v = x[idx]
                gv = g[idx]
                out[idx] = gv * fgrad(v, w[c])
                h = T(0) if v > 0 else v * gv
                if c == cur:
                    acc += h
                else:
                    if cur >= 0:
                        if shared:
                            cuda.atomic.add(sh, cur, acc)
                        else:
                            cuda.atomic.add(gw, cur, acc)
                    cur = c
                    acc = h
            if cur >= 0:
                if shared:
                    cuda.atomic.add(sh, cur, acc)
                else:
                    cuda.atomic.add(gw, cur, acc)
        cuda.syncthreads()
        if shared:
            for c in range(tid, C, block):
                s = sh[c]
                if s != T(0):  # NaN too
                    cuda.atomic.add(gw, c, s)

    k.__name__ = k.__qualname__ = "fastact_prelu_bwd"
    return k


# kind -> (source factory, takes a block size)
_SOURCES = {
    "softmax_rows": (lambda dt, b: _softmax_rows_src(False, dt, b)),
    "log_softmax_rows": (lambda dt, b: _softmax_rows_src(True, dt, b)),
    "softmax_cols": (lambda dt, b: _softmax_cols_src(False, dt)),
    "log_softmax_cols": (lambda dt, b: _softmax_cols_src(True, dt)),
    "softmax_bwd_rows": (lambda dt, b: _softmax_bwd_rows_src(False, dt, b)),
    "log_softmax_bwd_rows": (lambda dt, b: _softmax_bwd_rows_src(True, dt, b)),
    "softmax_bwd_cols": (lambda dt, b: _softmax_bwd_cols_src(False, dt)),
    "log_softmax_bwd_cols": (lambda dt, b: _softmax_bwd_cols_src(True, dt)),
    "maxout": (lambda dt, b: _maxout_src(dt)),
    "maxout_bwd": (lambda dt, b: _maxout_bwd_src(dt)),
    "prelu": (lambda dt, b, fresh=False: _prelu_src(False, dt, fresh)),
    "prelu_grad": (lambda dt, b, fresh=False: _prelu_src(True, dt, fresh)),
    "prelu_bwd": (lambda dt, b, fresh=False: _prelu_bwd_src(dt, b, fresh)),
}
KINDS = tuple(_SOURCES)

# The arguments after the arrays, and how many arrays (for compile_ptx signatures).
_SIG = {
    "rows": (2, ("i8", "i8")),
    "cols": (2, ("i8",)),
    "bwd_rows": (3, ("i8", "i8")),
    "bwd_cols": (3, ("i8",)),
    "maxout": (2, ("i8", "i8")),
    "maxout_bwd": (3, ("i8", "i8")),
    "prelu": (3, ("i8", "i8")),
    "prelu_grad": (3, ("i8", "i8")),
    "prelu_bwd": (5, ("i8", "i8", "i8")),
}


@functools.cache
def kernel(kind: str, dtype: str):
    """The ``@cuda.jit`` kernel of ``kind`` for ``dtype`` (compiled per array type on first
    launch)."""
    return cuda.jit(_SOURCES[kind](np.dtype(dtype), _block()))


def kernel_signature(kind: str, dtype, ndim: int = 2) -> tuple:
    """Numba argument types of ``kind``'s kernel on C-contiguous ``ndim``-d arrays (weights
    and the weight gradient 1-D)."""
    from numba import from_dtype, int64

    t = from_dtype(np.dtype(dtype))
    key = next(s for s in sorted(_SIG, key=len, reverse=True) if kind.endswith(s))
    narr, rest = _SIG[key]
    arr = t[(slice(None),) * (ndim - 1) + (slice(None, None, 1),)]
    vec = t[::1]
    if kind.startswith("prelu_bwd"):
        arrays = (arr, arr, vec, arr, vec)
    elif kind.startswith("prelu"):
        arrays = (arr, vec, arr)
    else:
        arrays = (arr,) * narr
    return arrays + (int64,) * len(rest)


def compile_ptx(kind: str, dtype=np.float32, cc=(9, 0), ndim: int = 2) -> str:
    """PTX of ``kind``'s kernel for ``dtype`` and compute capability ``cc`` (no GPU needed),
    with a 256-thread block."""
    src = _SOURCES[kind]
    dt = np.dtype(dtype)
    block = _cuda.THREADS_PER_BLOCK
    py = src(dt, block, True) if kind.startswith("prelu") else src(dt, block)
    with _cuda._device_cc(cc):
        ptx, _ = cuda.compile_ptx(py, kernel_signature(kind, dt, ndim), cc=cc)
    return ptx


# ------------------------------------------------------------------ operands
def _is_cuda(a) -> bool:
    return a is not None and D.is_cuda_array(a)


class _Call:
    """The operands of one call on the GPU: device views of the inputs, where the result
    goes and how it comes back. ``device``: some operand is a CUDA array (results are
    arrays of its library, zero-copy); otherwise host arrays are copied over and back."""

    def __init__(self, fname: str, inputs, names, out, stream, inplace: bool = False):
        self.fname = fname
        self.out = out
        self.inplace = inplace
        self.s = _cuda._stream(stream)
        self.device = any(_is_cuda(a) for a in inputs) or _is_cuda(out)
        self.like = next((a for a in (*inputs, out) if _is_cuda(a)), None)
        if self.device:
            self.devs = [self._device_input(a, w) for a, w in zip(inputs, names, strict=True)]
            dts = {np.dtype(d.dtype) for d in self.devs}
            if len(dts) > 1:
                pairs = zip(names, self.devs, strict=True)
                have = " and ".join(f"{w} ({d.dtype})" for w, d in pairs)
                raise TypeError(f"{fname}: {have} must have the same dtype on the CUDA target")
            if inplace:
                if not _is_cuda(inputs[0]):
                    raise TypeError("in-place on the CUDA target needs a CUDA array")
                if _cuda._readonly(inputs[0]):
                    raise ValueError("x is read-only")
        else:
            if inplace:
                hosts = [D.check_inplace(inputs[0])]
            else:
                hosts = [D.as_input(a, w) for a, w in zip(inputs, names, strict=True)]
                dt = functools.reduce(np.promote_types, [h.dtype for h in hosts])
                hosts = [h.astype(dt, copy=False) for h in hosts]
            self.hosts = hosts
            self.devs = None  # copied over by to_device(), after the checks
        self.dtype = np.dtype((self.devs or self.hosts)[0].dtype)

    def _device_input(self, a, what):
        if _is_cuda(a):
            d = _cuda._as_device(a, what)
        else:  # a host operand next to a device one: copy it over
            d = cuda.to_device(np.ascontiguousarray(D.as_input(a, what)), stream=self.s)
        _cuda._check_dtype(np.dtype(d.dtype), what)
        return d

    @property
    def shapes(self):
        return [tuple(a.shape) for a in (self.devs or self.hosts)]

    def check_out(self, shape: tuple) -> None:
        """Validate ``out`` for a result of ``shape`` (before anything is written)."""
        out = self.out
        if out is None or self.inplace:
            return
        if not self.device:
            D.check_out(out, shape, self.dtype)
            return
        if not _is_cuda(out):
            raise TypeError(
                f"out must be a CUDA array when the inputs are on the GPU, got {type(out).__name__}"
            )
        d = _cuda._as_device(out, "out")
        if tuple(d.shape) != tuple(shape):
            raise ValueError(f"out has shape {tuple(d.shape)}, the result has shape {shape}")
        if np.dtype(d.dtype) != self.dtype:
            raise TypeError(
                f"out has dtype {d.dtype}, the result {self.dtype}; the CUDA target writes the "
                "input's dtype"
            )
        if _cuda._readonly(out):
            raise ValueError("out is read-only")

    def to_device(self) -> list:
        """Device views of the inputs (host inputs copied over now)."""
        if self.devs is None:
            self.devs = [cuda.to_device(np.ascontiguousarray(h), stream=self.s) for h in self.hosts]
        return self.devs

    def result(self, shape: tuple, like_input: int | None = 0):
        """(result object, its device view): out, x itself in place, or a new array."""
        devs = self.to_device()
        if self.inplace:
            return None, devs[0]
        if self.device:
            if self.out is not None:
                return self.out, _cuda._as_device(self.out, "out")
            same = like_input is not None and tuple(devs[like_input].shape) == tuple(shape)
            if same and tuple(self.like.shape) == tuple(shape):  # keeps F order (numba, CuPy)
                return _cuda._empty_like(self.like, devs[like_input])
            return _alloc(self.like, shape, self.dtype)
        return None, cuda.device_array(shape, dtype=self.dtype, stream=self.s)

    def finish(self, res, dres, scalar: bool = False):
        """The value to return: the device result, or for host operands the copy back."""
        if self.device:
            return res if not self.inplace else None
        host = dres.copy_to_host(stream=self.s)
        self.s.synchronize()
        if self.inplace:
            return host
        if self.out is not None:
            np.copyto(self.out, host, casting="same_kind")
            return self.out
        return host[()] if (scalar and host.ndim == 0) else host


def _alloc(like, shape: tuple, dt, zero: bool = False):
    """A new (result, numba view) of ``shape`` in ``like``'s library (CuPy, torch, numba)."""
    lib = _cuda._lib(like)
    if lib == "cupy":
        import cupy

        res = (cupy.zeros if zero else cupy.empty)(shape, dtype=dt)
        return res, cuda.as_cuda_array(res)
    if lib == "torch":
        import torch

        make = torch.zeros if zero else torch.empty
        res = make(shape, dtype=getattr(torch, np.dtype(dt).name), device=like.device)
        return res, cuda.as_cuda_array(res)
    res = cuda.to_device(np.zeros(shape, dt)) if zero else cuda.device_array(shape, dtype=dt)
    return res, res


def _fold(arrays: list, ax: int) -> tuple[list, int]:
    """Arrays all C- (or all F-) contiguous as (P, n_i, Q) views around ``ax`` (axis 1);
    otherwise the arrays themselves."""
    order = None
    if all(a.is_c_contiguous() for a in arrays):
        order = "C"
    elif all(a.is_f_contiguous() for a in arrays):
        order = "F"
    if order is None or arrays[0].ndim == 3 and ax == 1:
        return arrays, ax
    res = []
    for a in arrays:
        P = math.prod(a.shape[:ax])
        Q = math.prod(a.shape[ax + 1 :])
        res.append(a.reshape((P, a.shape[ax], Q), order=order))
    return res, 1


def _flat(arrays: list) -> list:
    """Arrays of one shape all C- or all F-contiguous as 1-D views; else themselves."""
    n = arrays[0].size
    for order, ok in (("C", "is_c_contiguous"), ("F", "is_f_contiguous")):
        if all(getattr(a, ok)() for a in arrays):
            return [a.reshape((n,), order=order) if a.ndim != 1 else a for a in arrays]
    return arrays


def _launch_flat(kind: str, dt, n: int, stream, *args) -> None:
    blocks, threads = _cuda.launch_config(n)
    kernel(kind, dt.name)[blocks, threads, stream](*args)


# ------------------------------------------------------------------ softmax family
def _row_layout(a, ax: int) -> bool:
    """True when ``ax`` has the smallest stride of ``a``'s dimensions longer than 1."""
    st = abs(a.strides[ax])
    return all(st <= abs(a.strides[d]) for d in range(a.ndim) if d != ax and a.shape[d] > 1)


def _launch_rows(kind: str, arrays: list, ax: int, stream, layout: int = 0) -> None:
    """Launch the rows or the columns kernel of ``kind`` over ``arrays`` (the layout is
    ``arrays[layout]``'s)."""
    a = arrays[layout]
    n = a.shape[ax]
    R = a.size // n
    dt = np.dtype(a.dtype)
    cols_min = _SIM_COLS_MIN_ROWS if _cuda.simulator() else _COLS_MIN_ROWS
    if not _row_layout(a, ax) and R >= cols_min:
        _launch_flat(kind + "_cols", dt, R, stream, *arrays, ax)
        return
    block = _block()
    tpr = min(block, max(_min_tpr(), 1 << max(0, math.ceil(n / 4) - 1).bit_length()))
    groups = -(-R // (block // tpr))
    blocks, threads = _cuda.launch_config(groups * block)
    kernel(kind + "_rows", dt.name)[blocks, threads, stream](*arrays, ax, tpr)


def _softmax(name: str, x, axis=-1, out=None, *, stream=None, inplace=False):
    base = name.rstrip("_")
    call = _Call(name, [x], ["x"], out, stream, inplace)
    (shape,) = call.shapes
    ax = L.check_axis(axis, len(shape), name)
    call.check_out(shape)
    res, dres = call.result(shape)
    (dx,) = call.devs
    if dx.size:
        arrays, fax = _fold([dx, dres], ax)
        _launch_rows(base, arrays, fax, call.s)
    r = call.finish(res, dres)
    if inplace:
        if not call.device:
            x[...] = r
        return x
    return r


def _softmax_backward(name: str, grad, y, axis=-1, out=None, *, stream=None):
    call = _Call(name, [grad, y], ["grad", "y"], out, stream)
    gs, ys = call.shapes
    if gs != ys:
        raise ValueError(f"{name}: grad has shape {gs} and y has shape {ys}")
    ax = L.check_axis(axis, len(ys), name)
    call.check_out(ys)
    res, dres = call.result(ys, like_input=1)
    dg, dy = call.devs
    if dy.size:
        arrays, fax = _fold([dg, dy, dres], ax)
        _launch_rows(name.replace("_backward", "_bwd"), arrays, fax, call.s, layout=1)
    return call.finish(res, dres)


# ------------------------------------------------------------------ maxout
def _maxout(x, pieces, axis=-1, out=None, *, stream=None):
    from ._prelu_maxout import _pieces

    call = _Call("maxout", [x], ["x"], out, stream)
    (shape,) = call.shapes
    ax = L.check_axis(axis, len(shape), "maxout")
    k = _pieces(pieces, shape[ax], "maxout")
    oshape = shape[:ax] + (shape[ax] // k,) + shape[ax + 1 :]
    call.check_out(oshape)
    res, dres = call.result(oshape, like_input=None)
    (dx,) = call.devs
    if dres.size:
        (fx, fo), fax = _fold([dx, dres], ax)
        _launch_flat("maxout", np.dtype(dx.dtype), fo.size, call.s, fx, fo, fax, k)
    return call.finish(res, dres)


def _maxout_backward(grad, x, pieces, axis=-1, out=None, *, stream=None):
    from ._prelu_maxout import _pieces

    name = "maxout_backward"
    call = _Call(name, [grad, x], ["grad", "x"], out, stream)
    gs, xs = call.shapes
    ax = L.check_axis(axis, len(xs), name)
    k = _pieces(pieces, xs[ax], name)
    gshape = xs[:ax] + (xs[ax] // k,) + xs[ax + 1 :]
    if gs != gshape:
        raise ValueError(
            f"{name}: grad has shape {gs}; maxout of x {xs} with pieces={k} along axis {ax} "
            f"has shape {gshape}"
        )
    call.check_out(xs)
    res, dres = call.result(xs, like_input=1)
    dg, dx = call.devs
    if dres.size:
        (fg, fx, fo), fax = _fold([dg, dx, dres], ax)
        _launch_flat("maxout_bwd", np.dtype(dx.dtype), fg.size, call.s, fg, fx, fo, fax, k)
    return call.finish(res, dres)


# ------------------------------------------------------------------ PReLU
def _weight(call: _Call, weight, shape: tuple, fname: str):
    """(device weight, 1-D, of the call's dtype; per_channel; weight's shape)."""
    dt = call.dtype
    if _is_cuda(weight):
        w = _cuda._as_device(weight, "weight")
        if np.dtype(w.dtype) != dt:
            raise TypeError(
                f"{fname}: weight has dtype {w.dtype} and x {dt}; on the CUDA target a device "
                "weight must have x's dtype"
            )
        wshape = tuple(w.shape)
    else:
        h = D.as_input(weight, "weight")
        wshape = h.shape
        w = None
    nch = shape[1] if len(shape) >= 2 else 1
    size = math.prod(wshape)
    if size != 1 and (len(wshape) != 1 or size != nch):
        raise ValueError(
            f"{fname}: weight has shape {wshape}; it needs 1 element or one per channel "
            f"({nch}, the size of x's axis 1)"
            + ("" if len(shape) >= 2 else f"; x has {len(shape)} dims, so no channel axis")
        )
    if w is None:
        w = cuda.to_device(np.ascontiguousarray(h.reshape(-1), dt), stream=call.s)
    elif w.ndim != 1:
        w = w.reshape((1,))
    return w, size != 1, wshape


def _prelu_arrays(arrays: list, per_channel: bool) -> tuple[list, int]:
    """(views, channel axis): contiguous arrays folded to (P, C, Q) or flat; 0-d as 1-d."""
    if arrays[0].ndim == 0:
        return [a.reshape((1,)) for a in arrays], 0
    if per_channel:
        return _fold(arrays, 1)
    return _flat(arrays), 0


def _prelu(name: str, x, weight, out=None, *, stream=None, inplace=False, grad=False):
    call = _Call(name, [x], ["x"], out, stream, inplace)
    (shape,) = call.shapes
    w, pc, _ = _weight(call, weight, shape, name)
    call.check_out(shape)
    res, dres = call.result(shape)
    (dx,) = call.devs
    if dx.size:
        (fx, fo), cax = _prelu_arrays([dx, dres], pc)
        kind = "prelu_grad" if grad else "prelu"
        _launch_flat(kind, call.dtype, fx.size, call.s, fx, w, fo, cax, int(pc))
    r = call.finish(res, dres, scalar=True)
    if inplace:
        if not call.device:
            x[...] = r
        return x
    return r


def _prelu_backward(grad, x, weight, out=None, *, stream=None):
    name = "prelu_backward"
    call = _Call(name, [grad, x], ["grad", "x"], out, stream)
    gs, xs = call.shapes
    if gs != xs:
        raise ValueError(f"{name}: grad has shape {gs} and x has shape {xs}")
    w, pc, wshape = _weight(call, weight, xs, name)
    call.check_out(xs)
    res, dres = call.result(xs, like_input=1)
    dg, dx = call.devs
    C = w.size if pc else 1
    if call.device:
        gw_res, gw = _alloc(call.like, (C,), call.dtype, zero=True)
    else:
        gw_res = gw = cuda.to_device(np.zeros(C, call.dtype), stream=call.s)
    if dx.size:
        (fg, fx, fo), cax = _prelu_arrays([dg, dx, dres], pc)
        n = fx.size
        blocks, threads = _cuda.launch_config(n)
        chunk = -(-n // blocks)
        k = kernel("prelu_bwd", call.dtype.name)
        k[blocks, threads, call.s](fg, fx, w, fo, gw, cax, int(pc), chunk)
    if call.device:
        return res, gw_res.reshape(wshape)
    gx = call.finish(res, dres)
    gwh = gw.copy_to_host(stream=call.s)
    call.s.synchronize()
    return gx, gwh.reshape(wshape)


# ------------------------------------------------------------------ entry point
def _softmax_fn(name, inplace):
    return lambda x, axis=-1, out=None, *, stream=None: _softmax(
        name, x, axis, out, stream=stream, inplace=inplace
    )


def _softmax_bwd_fn(name):
    return lambda grad, y, axis=-1, out=None, *, stream=None: _softmax_backward(
        name, grad, y, axis, out, stream=stream
    )


_FUNCS = {
    "softmax": _softmax_fn("softmax", False),
    "softmax_": _softmax_fn("softmax_", True),
    "log_softmax": _softmax_fn("log_softmax", False),
    "log_softmax_": _softmax_fn("log_softmax_", True),
    "softmax_backward": _softmax_bwd_fn("softmax_backward"),
    "log_softmax_backward": _softmax_bwd_fn("log_softmax_backward"),
    "maxout": _maxout,
    "maxout_backward": _maxout_backward,
    "prelu": lambda x, weight, out=None, *, stream=None: _prelu(
        "prelu", x, weight, out, stream=stream
    ),
    "prelu_": lambda x, weight, *, stream=None: _prelu(
        "prelu_", x, weight, stream=stream, inplace=True
    ),
    "prelu_grad": lambda x, weight, out=None, *, stream=None: _prelu(
        "prelu_grad", x, weight, out, stream=stream, grad=True
    ),
    "prelu_backward": _prelu_backward,
}


def nonelementwise(name: str, *args, **kwargs):
    """Run public function ``name`` of the non-elementwise activations on the GPU."""
    _cuda._require_gpu()
    try:
        fn = _FUNCS[name]
    except KeyError:
        raise ValueError(f"no CUDA implementation of {name!r}") from None
    return fn(*args, **kwargs)
