"""CPU kernels built from the scalar formulas: flat loops and ufuncs, compiled lazily.

- ``flat_kernel(fn, nin, parallel)``: ``out[i] = fn(x[i], *p)`` (nin=1) or
  ``out[i] = g[i] * fn(x[i], *p)`` (nin=2) over contiguous 1-D arrays, a SIMD loop; with
  ``parallel=True`` the loop is a ``prange`` over all threads. Cached on disk.
- ``ufunc(fn, nin, nparams, dtype)``: the same element function as a NumPy ufunc, for strided
  and broadcast inputs and NumPy's casting and overlap rules.

Nothing is compiled at import; each factory is memoised per (formula, shape of call, target).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import os
import pathlib
import platform
import threading

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, vectorize
from numba.core import cgutils
from numba.core.caching import FunctionCache, IndexDataCacheFile
from numba.extending import intrinsic, overload

from . import _piecewise
from . import _vmath as vm

_OPTIONS = {"error_model": "numpy", "fastmath": {"contract"}, "nogil": True}


@functools.cache
def source_stamp() -> str:
    """Hash of the sources that kernels are compiled from, plus the Numba version and the
    host facts that choose their code beside Numba's target (AVX-512 in use, the host
    CPU: AMD Zen and which).

    Numba's own cache only notices changes in the file of the cached function; formulas and
    the math layer live in other files, so their text is part of every cache key.
    """
    h = hashlib.sha256(f"{numba.__version__} scalef={vm._SCALEF} host={vm._HOST_CPU}".encode())
    here = pathlib.Path(__file__).parent
    for name in ("_formulas.py", "_vmath.py", "_piecewise.py", "_cpu.py", "_ufunc_loop.py"):
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


class _StableCache(FunctionCache):
    """A disk cache keyed by kernel name and source stamp, not by closure contents.

    (Numba keys closures by pickling their cells, and a pickled dispatcher differs in every
    process, so the default cache never hits for a generated kernel.)
    """

    def __init__(self, py_func):
        super().__init__(py_func)
        self._cache_file = _RobustCacheFile(
            cache_path=self._cache_path,
            filename_base=self._impl.filename_base,
            source_stamp=self._impl.locator.get_source_stamp(),
        )

    def _index_key(self, sig, codegen):
        return (sig, codegen.magic_tuple(), source_stamp())

    def load_overload(self, sig, target_context):
        """The cached kernel, or None (compile it) if the cache cannot be read back or holds
        code for other argument types (then the save after compiling rewrites the entry)."""
        try:
            cres = super().load_overload(sig, target_context)
        except Exception:
            return None
        want = tuple(getattr(sig, "args", sig))
        if cres is not None and tuple(cres.signature.args) != want:
            return None
        return cres


try:
    import fcntl
except ImportError:  # (Windows: no lock; Numba's own behaviour)
    fcntl = None


class _RobustCacheFile(IndexDataCacheFile):
    """Numba's index/data files, where a truncated or garbled file counts as a cache miss
    (it is rewritten by the next save) instead of an exception in the user's call.

    Saving holds an exclusive lock on ``INDEX.lock`` while it reads the index, picks a data
    file, writes the data and then the index. Numba's own save does neither: two processes
    that compile two signatures of one kernel at once can both pick data file 1, and the
    index then names the other's code (pytest-xdist workers did; the call then failed with
    "can't unbox array" until the cache was cleared)."""

    def save(self, key, data):
        with self._locked():
            overloads = self._load_index()
            data_name = overloads.get(key)
            if data_name is None:
                taken = set(overloads.values())
                data_name = next(
                    n for n in map(self._data_name, itertools.count(1)) if n not in taken
                )
                overloads[key] = data_name
            self._save_data(data_name, data)
            self._save_index(overloads)

    @contextlib.contextmanager
    def _locked(self):
        try:
            fh = open(self._index_path + ".lock", "ab") if fcntl is not None else None
        except OSError:  # (a folder that takes the index but not a new file: no lock)
            fh = None
        if fh is None:
            yield
            return
        with fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _load_index(self):
        try:
            return super()._load_index()
        except Exception:
            return {}

    def _load_data(self, name):
        try:
            return super()._load_data(name)
        except Exception:
            return None


def attach_cache(compiled, pyfunc) -> None:
    """Give ``compiled`` (a dispatcher or a C callback of ``pyfunc``) the disk cache if some
    cache folder is writable; otherwise it runs uncached."""
    if os.environ.get("FASTACT_NO_CACHE"):
        return
    try:
        compiled._cache = _StableCache(pyfunc)
    except RuntimeError:  # no writable cache locator: compile in memory only
        pass


def jit_kernel(pyfunc, name: str, parallel: bool):
    """``njit`` a kernel with fastact's options and a disk cache keyed by ``name`` and the
    source stamp (so edits to formulas or the math layer recompile). Names must be unique."""
    disp = njit(parallel=parallel, **_OPTIONS)(unique_name(pyfunc, name))
    attach_cache(disp, disp.py_func)
    if parallel and not concurrent_launch_ok():
        return _TakingTurns(disp)
    return disp


# Numba's workqueue threading layer aborts the process ("Concurrent access has been
# detected") when two Python threads run parallel kernels at once; omp and tbb do not. Under
# workqueue fastact's parallel kernels take turns under this lock.
_LAUNCH_LOCK = threading.Lock()
_CONCURRENT_OK: list[bool] = []  # [whether the threading layer takes concurrent launches]


def concurrent_launch_ok() -> bool:
    """Whether parallel kernels may run from several threads at once (any threading layer
    but workqueue). Starts Numba's thread pool to find out, as a first parallel call would."""
    if not _CONCURRENT_OK:
        try:
            from numba.np.ufunc.parallel import _launch_threads

            _launch_threads()
            ok = numba.threading_layer() != "workqueue"
        except Exception:  # unknown: be safe
            ok = False
        _CONCURRENT_OK.append(ok)
    return _CONCURRENT_OK[0]


class _TakingTurns:
    """A parallel dispatcher whose calls hold ``_LAUNCH_LOCK`` (workqueue layer only);
    every other attribute is the dispatcher's."""

    def __init__(self, disp):
        self.dispatcher = disp

    def __call__(self, *args):
        with _LAUNCH_LOCK:
            return self.dispatcher(*args)

    def __getattr__(self, name):
        return getattr(self.dispatcher, name)


def taking_turns(kernel, call):
    """``call`` (an entry point of ``kernel``) under the launch lock if ``kernel`` needs it."""
    if not isinstance(kernel, _TakingTurns):
        return call

    def locked(*args):
        with _LAUNCH_LOCK:
            return call(*args)

    return locked


@intrinsic
def wide_vectors(typingctx):
    """Marks the function it is called from with LLVM's ``prefer-vector-width=512``: on
    AVX-512 machines that LLVM tunes for 256-bit vectors (Intel server cores), the loop is
    then vectorized over zmm registers, 1.3-1.6x faster for the polynomial kernels. Emits no
    instruction; ignored where 512-bit vectors do not exist. Every njit helper that holds a
    loop calls it itself: Numba optimizes a helper before inlining it, so the kernel's mark
    does not reach the helper's loops (the far parts of the splits ran over ymm on an Intel
    Emerald Rapids: float32 silu' on values in ±30, 1.94 against 1.01 ns an element)."""

    def codegen(context, builder, signature, args):
        # llvmlite validates attribute names; a key="value" pair goes in verbatim
        set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()

    return numba.types.none(), codegen


# How far ahead of the block being computed the kernels ask for data, and into which cache
# level: (bytes ahead, LLVM locality) pairs, 3 = prefetcht0 (into L1), 2 = prefetcht1 (into
# L2). Measured on 10^8 float32 in place, 2 threads, on an Intel Xeon: without any, compute
# and DRAM traffic barely overlap (sigmoid 1.8x the memory floor, hardsigmoid 1.25x); 4 KB
# ahead into L1, 1.15x and 0.94x; 32 KB was worse; prefetching for writing (prefetchw) made
# relu slower. On a later Intel Xeon (LLVM "rocketlake", AVX-512), 4 KB into L1 held the
# clamps at 1.45-1.5x the floor (relu6, hardtanh: 23 ms, the same as sigmoid; 17.7 ms
# with no prefetch): each of those requests holds one of L1's few fill buffers through the
# whole DRAM latency. Two steps, 4 KB ahead into L2 and 512 bytes ahead from L2 into L1,
# brought the clamps to 0.98x and sigmoid from 1.44x to 1.26x, mish 1.61x to 1.44x (gelu,
# softplus the same). Backward passes (two streams in) kept 4 KB into L1: with the two steps
# sigmoid' went from 1.09x to 1.19x its floor, relu' from 1.14x to 1.08x, gelu' 1.24x to
# 1.20x. Where the output is not an input (out of place), its block is asked for too, by the
# same plan: on that Xeon, relu6(x, out=o) on 10^8 float32 went from 34.8 to 27.8 ms, sigmoid
# 32.5 to 28.1, gelu 35-37 to 30-32; relu_backward(g, x, out=o) 52.7 to 40.8, sigmoid' 47.5
# to 42, gelu' 50-54 to 41-43 (prefetchw, for writing, measured the same as a read
# prefetch). On AMD Zen (LLVM's "znver*"), whose own prefetchers keep up, none: the same
# kernels with and without, interleaved, ran forward in the same time and backward 0-9%
# faster without (relu 27.1 against 29.6 ms, hardsigmoid 22.8 against 25.0, gelu 24.2
# against 25.9). Kernels cached on disk are keyed by the CPU, so each gets its own.
ZEN = vm.ZEN
PREFETCH_FORWARD = () if ZEN else ((4096, 2), (512, 3))
PREFETCH_BACKWARD = () if ZEN else ((4096, 3),)
_LINE = 64


def _prefetcher(plan: tuple, name: str):
    """An intrinsic ``name(arr, start)`` that hints the CPU to load the BLOCK elements that
    begin ``ahead`` bytes after ``arr[start]`` into the cache level ``locality`` says, for
    each (ahead, locality) in ``plan``: one prefetch per 64-byte line. A prefetch never
    faults, so addresses past the end of ``arr`` are harmless. Emits no store and changes no
    value; emits nothing at all for an empty plan."""

    def prefetch(typingctx, arr, start):
        if not (isinstance(arr, numba.types.Array) and isinstance(start, numba.types.Integer)):
            return None

        def codegen(context, builder, signature, args):
            if not plan:
                return context.get_dummy_value()
            a, i = args
            ary = context.make_array(signature.args[0])(context, builder, value=a)
            item = context.get_abi_sizeof(context.get_data_type(signature.args[0].dtype))
            i64 = ir.IntType(64)
            i32 = ir.IntType(32)
            i8p = ir.IntType(8).as_pointer()
            base = builder.add(
                builder.ptrtoint(ary.data, i64), builder.mul(builder.sext(i, i64), i64(item))
            )
            fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
            for ahead, locality in plan:
                for off in range(0, BLOCK * item, _LINE):
                    addr = builder.inttoptr(builder.add(base, i64(ahead + off)), i8p)
                    builder.call(fn, [addr, i32(0), i32(locality), i32(1)])  # read, data
            return context.get_dummy_value()

        return numba.types.none(arr, start), codegen

    prefetch.__name__ = prefetch.__qualname__ = name
    return intrinsic(prefetch)


prefetch_ahead = _prefetcher(PREFETCH_FORWARD, "prefetch_ahead")
prefetch_ahead_2 = _prefetcher(PREFETCH_BACKWARD, "prefetch_ahead_2")
"""The same by the backward pass's plan (its kernels read g and x, and may write an out)."""


# Kernels run over whole blocks of BLOCK elements (a multiple of every SIMD width), each a
# slice (a slice index is provably non-negative, so no wraparound select blocks SIMD), and the
# last partial block through a zero-padded buffer by the same loop: every element is
# computed by the same vector code, so results do not depend on the array's length, on
# where a chunk of "parallel" starts, or on alignment ("cpu" == "parallel" bitwise), and
# there is no scalar remainder loop whose contractions could round differently.
BLOCK = 64


@functools.cache
def _last_block(fn, nin: int):
    """``tail(x, out, s, *p)`` / ``tail(g, x, out, s, *p)``: writes the results for
    ``x[s:]`` (fewer than BLOCK elements) to ``out[s:]``, computed in a zero-padded block
    (on the stack) by the same steps as the full blocks. Shared by the flat and in-place
    kernels of ``fn``. (The copies are loops: slice assignments compiled Numba's shape check
    and the formatting of its message, 2.5 s of string code, into every process.)"""
    prepare, finish, _ = _stages(fn)
    if nin == 1:

        def tail(x, out, s, *p):
            wide_vectors()
            m = x.size - s
            bx = block_buffer(x)
            bx[:] = 0
            for j in range(m):
                bx[j] = x[s + j]
            P = block_buffer(x)
            prepare(bx, P, *p)
            bo = block_buffer(x)  # (stored back into bx, an unchanged x was a masked store)
            for j in range(BLOCK):
                bo[j] = finish(bx[j], P[j], *p)
            for j in range(m):
                out[s + j] = bo[j]

    else:

        def tail(g, x, out, s, *p):
            wide_vectors()
            m = x.size - s
            bg = block_buffer(x)
            bx = block_buffer(x)
            bg[:] = 0
            bx[:] = 0
            for j in range(m):
                bg[j] = g[s + j]
                bx[j] = x[s + j]
            P = block_buffer(x)
            prepare(bx, P, *p)
            for j in range(BLOCK):
                bg[j] = bg[j] * finish(bx[j], P[j], *p)
            for j in range(m):
                out[s + j] = bg[j]

    return njit(**_OPTIONS)(unique_name(tail, f"{fn.__name__}_tail{nin}"))


def unique_name(pyfunc, name: str):
    """``pyfunc`` renamed ``name``, for a function generated per formula that a cached kernel
    calls. Numba names compiled code by qualified name and a per-process counter, so two
    closures with the same qualified name, compiled in different processes and loaded from the
    disk cache into one, can get the same symbol, and the loader resolves both calls to one of
    them (found in a test run: mish_grad's last block ran silu_grad's code)."""
    pyfunc.__qualname__ = pyfunc.__name__ = name
    return pyfunc


@intrinsic
def block_buffer(typingctx, like):
    """A C-contiguous array of BLOCK elements of ``like``'s dtype on the stack of the calling
    function (one per call of it, not per loop iteration), uninitialised, aligned to 64 bytes
    (a cache line: its zmm loads and stores never split one, wherever the stack falls)."""
    if not isinstance(like, numba.types.Array):
        return None
    arrty = numba.types.Array(like.dtype, 1, "C")

    def codegen(context, builder, signature, args):
        elty = context.get_data_type(like.dtype)
        data = cgutils.alloca_once(builder, elty, size=BLOCK)
        data.align = _LINE
        ary = context.make_array(arrty)(context, builder)
        item = context.get_abi_sizeof(elty)
        intp = context.get_value_type(numba.types.intp)
        context.populate_array(
            ary, data=data, shape=[intp(BLOCK)], strides=[intp(item)], itemsize=intp(item),
            meminfo=None,
        )
        return ary._getvalue()

    return arrty(like), codegen


def copy_block(src, dst):
    """``dst[:BLOCK] = src[:BLOCK]``. In compiled code, for C-contiguous arrays of one dtype,
    one ``llvm.memcpy`` of constant size: vector moves wherever it is inlined. (Written as a
    loop, LLVM unrolled the copy into BLOCK scalar moves in many kernels, e.g. float32
    hardtanh and relu' into a new array, float64 sigmoid in place, and the vector loads of
    the buffer then waited on them: relu' 3-4x slower than in place.) Other layouts (a
    strided or self-overlapping view) copy element by element."""
    dst[:BLOCK] = src[:BLOCK]


@overload(copy_block)
def _copy_block_impl(src, dst):
    if src.layout == "C" and dst.layout == "C" and src.dtype == dst.dtype:
        return lambda src, dst: _memcpy_block(src, dst)

    def loop(src, dst):
        for i in range(BLOCK):
            dst[i] = src[i]

    return loop


@intrinsic
def _memcpy_block(typingctx, src, dst):
    """``llvm.memcpy`` of BLOCK elements from C-contiguous ``src`` to ``dst``."""

    return numba.types.none(src, dst), _memcpy_codegen


def _memcpy_codegen(context, builder, signature, args):
    """The code of ``_memcpy_block``."""
    s, d = (
        context.make_array(t)(context, builder, value=v) for t, v in zip(signature.args, args)
    )
    item = context.get_abi_sizeof(context.get_data_type(signature.args[0].dtype))
    i8p = ir.IntType(8).as_pointer()
    cgutils.raw_memcpy(
        builder, builder.bitcast(d.data, i8p), builder.bitcast(s.data, i8p),
        ir.IntType(64)(BLOCK), item,
    )
    return context.get_dummy_value()


# bytes in the vectors of store_block_opaque: 256-bit where the target has AVX, 128-bit
# (SSE) where it does not (NUMBA_CPU_NAME=generic: no 256-bit register for the asm's "x");
# no x86: no asm (a plain copy)
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")
_VECTOR = 32 if "avx" in vm.TARGET_FEATURES else 16


@intrinsic
def store_block_opaque(typingctx, src, dst):
    """``dst[:BLOCK] = src[:BLOCK]`` for C-contiguous 1-D arrays of one dtype, in vectors
    (``_VECTOR``), each passed through an empty inline-asm statement on its way: the
    optimiser then cannot tell that some elements are stored back unchanged, and stores
    every vector whole (no masked store, whose AVX2 form is microcoded on AMD Zen). The asm
    statements emit nothing: one load and one store per vector. (Elsewhere than x86: a
    plain copy.)"""
    ok = (
        isinstance(src, numba.types.Array) and isinstance(dst, numba.types.Array)
        and src.dtype == dst.dtype and src.layout == dst.layout == "C"
    )  # fmt: skip
    if not ok:
        return None
    if not _X86:
        return numba.types.none(src, dst), _memcpy_codegen

    def codegen(context, builder, signature, args):
        s, d = (
            context.make_array(t)(context, builder, value=v)
            for t, v in zip(signature.args, args)
        )
        elty = context.get_data_type(signature.args[0].dtype)
        item = context.get_abi_sizeof(elty)
        lanes = _VECTOR // item
        vec = ir.VectorType(elty, lanes)
        ps = builder.bitcast(s.data, vec.as_pointer())
        pd = builder.bitcast(d.data, vec.as_pointer())
        barrier = ir.FunctionType(vec, [vec])
        for q in range(BLOCK // lanes):
            v = builder.load(builder.gep(ps, [ir.IntType(32)(q)]), align=item)
            v = builder.asm(barrier, "", "=x,0", [v], side_effect=False)
            builder.store(v, builder.gep(pd, [ir.IntType(32)(q)]), align=item)
        return context.get_dummy_value()

    return numba.types.none(src, dst), codegen


def _dtype_of(ty):
    """The scalar type of a Numba array type, or the type itself."""
    return ty.dtype if isinstance(ty, numba.types.Array) else ty


def _tables_serve(ty) -> bool:
    """Whether the kernels take the tables for Numba type ``ty`` (an array's or a scalar's):
    float32 on a CPU with AVX-512."""
    return bool(vm._AVX512) and _dtype_of(ty) == numba.types.float32


def _predicate(test, name: str):
    """A function of one array or scalar, for compiled code: the constant ``test(its type)``."""

    def pred(x):
        raise NotImplementedError("compiled only")

    def impl(x):
        return (lambda x: True) if test(x) else (lambda x: False)

    overload(pred, jit_options=_OPTIONS, inline="always")(unique_name(impl, f"{name}_impl"))
    pred.test = test
    return unique_name(pred, name)


_TABLES_SERVE = _predicate(_tables_serve, "tables_serve")
_NEVER = _predicate(lambda ty: False, "no_split")
_ALWAYS = _predicate(lambda ty: True, "always_split")
_AVX2_PASSES_SERVE = _predicate(lambda ty: not vm._AVX512 or _tables_serve(ty), "avx2_passes")


@functools.cache
def _stages(fn):
    """``(prepare, finish, in_use)`` for formula ``fn``: the kernels compute a block as
    ``prepare(x, P, *p)`` then ``out[i] = finish(x[i], P[i], *p)``, P a BLOCK buffer;
    ``in_use(x)`` says whether the split stages below serve the dtype of x (a constant).

    For a formula with a ``split`` (``_formulas.Split``), prepare fills P with the near
    part for the whole block in one pass (if some element is near) and, only if some element
    is not near, with the far part where it applies (a loop per pass where the far part is
    a chain of ``_formulas.passes``: ``_far_block``); finish is the split's. Otherwise
    prepare copies the block of x into P and finish(x, P, *p) is fn(P, *p): the same values,
    but the block's loads come first, in one burst, instead of spread through the arithmetic.
    On AMD Zen 4 that made the exp-based backward passes 1.2-1.5x faster (in cache too: the
    loop that writes g reads g and the buffer, not g and x) and the forward passes no slower;
    on 10^8 float32 with 2 threads sigmoid' went from 1.47x to 0.99x its floor, softplus'
    from 1.65x to 1.08x.

    A split whose near part is a formula, or whose far part is a chain of passes, serves
    every dtype on every CPU, but a chain marked ``avx2_only`` (``_formulas.passes``) only
    where its table does or without AVX-512; one with a table and a far part in one piece,
    float32 where the tables exist (AVX-512). Elsewhere the formula takes the plain stages:
    tanh' without a table (0.82 against 0.75 ns an element in cache, float32 compiled for a
    Zen 3). The passes: faster with AVX2's 16 vector registers, and for float64 on a Zen 4
    and an Intel Emerald Rapids (in cache, ns an element, plain against passes: Zen 4
    softplus 3.14 against 1.83, log-sigmoid 2.62 against 1.72, mish' 2.21 against 1.84,
    silu' 1.66 against 1.38; Emerald Rapids 3.29 against 2.06, 2.67 against 1.90, 2.11
    against 1.76, 1.59 against 1.44) but for gelu (Zen 4 2.73 against 2.92, Emerald Rapids
    3.24 against 3.28), gelu' (3.71 against 3.92, 3.75 against 4.00), tanhshrink (1.60
    against 1.78, 1.60 against 1.76) and tanhshrink' (1.70 against 1.83, 1.56 against
    1.74), the four marked ``avx2_only``. (On Intel float64 took the plain stages for every
    formula until the passes' loops were vectorized over zmm: see ``wide_vectors``.)"""
    split = getattr(fn, "split", None)
    name = fn.__name__

    def plain_prepare(x, P, *p):
        copy_block(x, P)

    if split is None:

        def plain_finish(x, P, *p):
            vm._inline_me()  # (a call per element would not vectorize)
            return fn(P, *p)

    else:  # where the plain stages serve a split formula its table is not in use: fn is
        # finish(x, far(x)), written so (typing fn's table branch, dead there, cost 0.5 s)
        far_part, finish_part = split.far, split.finish

        def plain_finish(x, P, *p):
            vm._inline_me()
            return finish_part(P, far_part(P, *p), *p)

    plain_prepare = njit(**_OPTIONS)(unique_name(plain_prepare, f"{name}_plain_prepare"))
    plain_finish = njit(**_OPTIONS)(unique_name(plain_finish, f"{name}_plain_finish"))
    if split is None:
        return plain_prepare, plain_finish, _NEVER
    split_prepare, split_finish = _split_stages(fn, split)
    if not _is_table(split.near_part):
        in_use = _ALWAYS  # (with a near formula the plain stages, the far part alone, are not fn)
    elif hasattr(split.far, "passes"):
        in_use = _AVX2_PASSES_SERVE if split.far.passes_avx2_only else _ALWAYS
    else:  # (a table that the kernels do not take: the far part is the formula)
        in_use = _TABLES_SERVE if split.near_part.avx512 else _NEVER

    # The choice is made when the kernel is typed, so only the stages in use are compiled.
    def prepare(x, P, *p):
        raise NotImplementedError("compiled only")

    def finish(x, P, *p):
        raise NotImplementedError("compiled only")

    def impl(split_stage, plain_stage, label):
        def choose(x, P, *p):
            split_here = in_use.test(x)
            chosen = split_stage if split_here else plain_stage

            def stage(x, P, *p):
                vm._inline_me()
                return chosen(x, P, *p)

            return unique_name(stage, f"{name}_{label}_{'split' if split_here else 'plain'}")

        return unique_name(choose, f"{name}_{label}_choice")

    overload(prepare, jit_options=_OPTIONS)(impl(split_prepare, plain_prepare, "prepare"))
    overload(finish, jit_options=_OPTIONS)(impl(split_finish, plain_finish, "finish"))
    return prepare, finish, in_use


def _split_stages(fn, split):
    """``(prepare, finish)`` of the split stages of ``fn`` (``_stages``)."""
    name = fn.__name__
    finish, arg, near = split.finish, split.arg, split.near or vm.near
    part = split.near_part
    if not _is_table(part):
        near_block = _formula_block(part, name)
    elif part.avx512:
        near_block = _piecewise.block_eval(part, BLOCK)
    else:  # without AVX-512 no element is ever near: the table's loop is never run, and not
        # compiled either (its scalar lookups took 0.8-1.4 s per formula and process)
        near_block = _no_table
    far = _far_block(split.far, near, name)

    def from_u(u, x, P, some, every, *p):
        vm._inline_me()
        if some:
            near_block(u, P)
        if not every:
            far(u, x, P, *p)

    from_u = njit(**_OPTIONS)(unique_name(from_u, f"{name}_from_u"))
    if arg is None:  # u = x: the table reads the block itself (gelu 4-6% faster in cache)

        def prepare(x, P, *p):
            vm._inline_me()
            wide_vectors()
            some, every = False, True
            for i in range(BLOCK):
                inside = near(x[i])
                some |= inside
                every &= inside
            from_u(x, x, P, some, every, *p)

    else:
        # The near test in the loop that computes u: as a loop of its own over the
        # buffer, LLVM forwarded u's 512-bit values into a 256-bit loop and took |u| of
        # their upper halves through general registers. x through a copy X on the stack:
        # passed with a second buffer, the block of x kept an atomic increment of its
        # array's reference count (NRT_incref) in every block, which the two threads of
        # a parallel loop contend for. Float32 softplus (the one split with an arg), in
        # cache 0.86 to 0.51 ns an element; on 10^8 with 2 threads 2.31x to 1.31x the
        # floor (Intel Xeon, AVX-512).

        def prepare(x, P, *p):
            vm._inline_me()
            wide_vectors()
            u = block_buffer(x)
            X = block_buffer(x)
            some, every = False, True
            for i in range(BLOCK):
                X[i] = x[i]
                v = arg(x[i], *p)
                u[i] = v
                inside = near(v)
                some |= inside
                every &= inside
            from_u(u, X, P, some, every, *p)

    return njit(**_OPTIONS)(unique_name(prepare, f"{name}_prepare")), finish


@njit(**_OPTIONS)
def _no_table(u, P):
    """The table part of a ``Split`` where ``near`` is never true: nothing."""


def _is_table(part) -> bool:
    """Whether the near part of a ``Split`` is a table (else a scalar formula)."""
    return isinstance(part, _piecewise.Table)


def _formula_block(part, name: str):
    """``run(u, P)``: P[i] = part(u[i]) over a block, for a ``Split`` whose near part is a
    formula."""

    def run(u, P):
        vm._inline_me()
        wide_vectors()
        for i in range(BLOCK):
            P[i] = part(u[i])

    return njit(**_OPTIONS)(unique_name(run, f"{name}_near"))


def _far_block(far, near, name: str):
    """``run(u, x, P, *p)``: P[i] = far(x[i], *p) where not near(u[i]) over a block, one
    loop per pass of a chain (``_formulas.passes``) through a block buffer."""
    chain = getattr(far, "passes", None)
    if chain is None:

        def run(u, x, P, *p):
            vm._inline_me()
            wide_vectors()
            for i in range(BLOCK):
                P[i] = P[i] if near(u[i]) else far(x[i], *p)

        return njit(**_OPTIONS)(unique_name(run, f"{name}_far"))
    first, last = chain[0], chain[-1]
    middle = _middle_passes(chain[1:-1], name)

    def run(u, x, P, *p):
        vm._inline_me()
        wide_vectors()
        V = block_buffer(x)
        for i in range(BLOCK):
            V[i] = first(x[i], *p)
        middle(x, V, *p)
        for i in range(BLOCK):
            P[i] = P[i] if near(u[i]) else last(x[i], V[i], *p)

    return njit(**_OPTIONS)(unique_name(run, f"{name}_far"))


def _middle_passes(chain, name: str):
    """``run(x, V, *p)``: V[i] = f(x[i], V[i], *p) over a block for each f of ``chain`` in
    turn, a loop each."""
    if not chain:

        def run(x, V, *p):
            vm._inline_me()

        return njit(**_OPTIONS)(unique_name(run, f"{name}_pass{len(chain)}"))
    head, f = _middle_passes(chain[:-1], name), chain[-1]

    def run(x, V, *p):
        vm._inline_me()
        wide_vectors()
        head(x, V, *p)
        for i in range(BLOCK):
            V[i] = f(x[i], V[i], *p)

    return njit(**_OPTIONS)(unique_name(run, f"{name}_pass{len(chain)}"))


# The two alias tests of the kernels compare the arrays' data pointers as integers in
# registers. Through ``a.ctypes.data`` (an object holding a reference to the array) a flat
# kernel took 7 atomic reference increments and 10 decrements per call, and compared the
# addresses as float64 (an unsigned pointer against a signed size): 0.05 µs of a 0.1 µs call
# of float32 relu' on 64 elements, in a loop of calls from compiled code.


def _data_span(context, builder, ty, value):
    """(first byte, one past the last) of 1-D C-contiguous array ``value``, as i64."""
    i64 = ir.IntType(64)
    ary = context.make_array(ty)(context, builder, value=value)
    start = builder.ptrtoint(ary.data, i64)
    (n,) = cgutils.unpack_tuple(builder, ary.shape, 1)
    item = context.get_abi_sizeof(context.get_data_type(ty.dtype))
    return start, builder.add(start, builder.mul(n, i64(item)))



@intrinsic
def same_data(typingctx, a, b):
    """Whether arrays a and b start at the same address (``a.ctypes.data == b.ctypes.data``
    without the ctypes objects)."""
    if not all(isinstance(t, numba.types.Array) for t in (a, b)):
        return None

    def codegen(context, builder, signature, args):
        pa, pb = (
            builder.ptrtoint(context.make_array(t)(context, builder, value=v).data,
                             ir.IntType(64))
            for t, v in zip(signature.args, args)
        )
        return builder.icmp_unsigned("==", pa, pb)

    return numba.types.boolean(a, b), codegen


@intrinsic
def _partial_overlap(typingctx, a, b):
    """Whether 1-D C-contiguous a and b share memory without starting at the same address."""
    if not all(isinstance(t, numba.types.Array) and t.ndim == 1 for t in (a, b)):
        return None

    def codegen(context, builder, signature, args):
        (pa, ea), (pb, eb) = (
            _data_span(context, builder, t, v) for t, v in zip(signature.args, args)
        )
        apart = builder.icmp_unsigned("!=", pa, pb)
        meet = builder.and_(builder.icmp_unsigned("<", pa, eb), builder.icmp_unsigned("<", pb, ea))
        return builder.and_(apart, meet)

    return numba.types.boolean(a, b), codegen


@functools.cache
def flat_kernel(fn, nin: int, parallel: bool):
    """Compiled loop applying formula ``fn`` over contiguous 1-D arrays into ``out``. Returns
    True; or False, writing nothing, when ``out`` overlaps an input other than element for
    element (the caller then copies the input), a check that costs nothing next to NumPy's
    ``may_share_memory`` (0.2 µs a call)."""
    tail = _last_block(fn, nin)
    prepare, finish, split_in_use = _stages(fn)
    if nin == 1:

        def kernel(x, out, *p):
            if _partial_overlap(out, x):
                return False
            n = x.size
            nb = n // BLOCK
            for b in prange(nb):
                wide_vectors()
                prefetch_ahead(x, b * BLOCK)
                prefetch_ahead(out, b * BLOCK)
                xb, ob = x[b * BLOCK : (b + 1) * BLOCK], out[b * BLOCK : (b + 1) * BLOCK]
                P = block_buffer(x)
                prepare(xb, P, *p)
                for j in range(BLOCK):
                    ob[j] = finish(xb[j], P[j], *p)
            if nb * BLOCK < n:
                tail(x, out, nb * BLOCK, *p)
            return True

    else:
        # Without a table (split), g·f'(x) goes into the buffer and the buffer to out in one
        # copy. Measured in cache against writing out from gb·P directly (why the direct form
        # is slower is not established; out may alias g and x, the buffer cannot): float32
        # relu' 0.14 against 0.16 ns per element, sigmoid' 0.41 against 0.48. A table
        # formula is faster the direct way (gelu' 0.44 against 0.79): where its split stages
        # serve the dtype (``split_in_use``). (The two bodies as one njit helper called per
        # block measured slower again: relu' 0.18, sigmoid' 0.85.)

        def kernel(g, x, out, *p):
            if _partial_overlap(out, x) or _partial_overlap(out, g):
                return False
            n = x.size
            nb = n // BLOCK
            for b in prange(nb):
                wide_vectors()
                lo, hi = b * BLOCK, (b + 1) * BLOCK
                prefetch_ahead_2(g, lo)
                prefetch_ahead_2(x, lo)
                prefetch_ahead_2(out, lo)
                gb, xb, ob = g[lo:hi], x[lo:hi], out[lo:hi]
                P = block_buffer(x)
                prepare(xb, P, *p)
                if split_in_use(xb):  # (a constant for the dtype)
                    for j in range(BLOCK):
                        ob[j] = gb[j] * finish(xb[j], P[j], *p)
                else:
                    for j in range(BLOCK):
                        P[j] = gb[j] * finish(xb[j], P[j], *p)
                    copy_block(P, ob)
            if nb * BLOCK < n:
                tail(g, x, out, nb * BLOCK, *p)
            return True

    kind = "par" if parallel else "ser"
    return jit_kernel(kernel, f"{fn.__name__}_n{nin}_{kind}", parallel)


# Element functions of fixed arity for @vectorize (which cannot take *args):
# (number of array inputs, number of parameters) -> body.
_ELEMENT = {
    (1, 0): lambda fn: lambda x: fn(x),
    (1, 1): lambda fn: lambda x, a: fn(x, a),
    (1, 2): lambda fn: lambda x, a, b: fn(x, a, b),
    (2, 0): lambda fn: lambda g, x: g * fn(x),
    (2, 1): lambda fn: lambda g, x, a: g * fn(x, a),
    (2, 2): lambda fn: lambda g, x, a, b: g * fn(x, a, b),
}


@functools.cache
def ufunc(fn, nin: int, nparams: int, dtype: np.dtype):
    """NumPy ufunc of formula ``fn`` for one dtype: inputs (x | g, x) then the parameters."""
    t = numba.from_dtype(dtype)
    sig = t(*([t] * (nin + nparams)))
    return vectorize([sig])(_ELEMENT[nin, nparams](fn))


def flat_overload(kernel, dtype: np.dtype, narrays: int):
    """The compile result of ``kernel`` whose first ``narrays`` arguments are contiguous 1-D
    ``dtype`` arrays (the rest: the parameters, typed for that dtype), or None."""
    arr = numba.types.Array(numba.from_dtype(dtype), 1, "C")
    for sig, cres in kernel.overloads.items():
        if all(t == arr for t in sig[:narrays]):
            return cres
    return None


def entry_point(kernel, dtype: np.dtype, narrays: int):
    """The compiled entry point of a flat kernel whose first ``narrays`` arguments are
    contiguous 1-D ``dtype`` arrays (called as ``entry(*arrays, params_tuple)``), or a call
    through the dispatcher if it has no such overload."""
    cres = flat_overload(kernel, dtype, narrays)
    if cres is not None:
        return taking_turns(kernel, cres.entry_point)
    return lambda *a: kernel(*a[:-1], *a[-1])


# Whether AVX-512's masked stores (the in-place form of a formula that leaves some x as it
# is: relu, leaky_relu, elu for x > 0) keep up with the memory: on an Intel Xeon and a Zen 4
# they do (relu 0.98-1.00x the floor); on a Zen 5 (LLVM "znver5") they do not: 10^8
# float32 in place, 2 threads, both kernels compiled in one process, 21 rounds in shuffled
# order: relu 1.02-1.14x the floor against 0.97-1.04x through the block buffer and
# whole-vector stores (torch.relu_ 0.93-1.03x), 4-9% slower round by round; at 4 M
# elements relu 13%, hardshrink 23% slower. Without AVX-512 the buffer serves every CPU
# (below); on an unknown newer Zen too.
MASKED_STORES_KEEP_UP = not ZEN or vm._HOST_CPU in ("znver4",)


def direct_stores(fn, parallel: bool) -> bool:
    """Whether the in-place kernel of formula ``fn`` stores its results straight back (with
    AVX-512), else through the block buffer in whole vectors: without AVX-512, and in the
    parallel loop for a formula marked ``keeps_x`` where masked stores do not keep up. The
    one-thread loop, which "auto" takes below its thresholds, where the data is in cache,
    keeps the masked stores: through the buffer it ran slower there on the Zen 5 (16 K
    float32, 21 alternating rounds in one process: relu 1.03x, elu 1.08x, hardshrink 1.27x),
    as did the formulas that keep no x (sigmoid, tanh, gelu, log_sigmoid 1.05-1.09x)."""
    keep = MASKED_STORES_KEEP_UP or not parallel or not getattr(fn, "keeps_x", False)
    return bool(vm._AVX512) and keep


@functools.cache
def inplace_kernel(fn, nin: int, parallel: bool):
    """Like ``flat_kernel`` when the output is the first array: ``a[i] = fn(a[i], *p)`` or
    ``g[i] = g[i] * fn(x[i], *p)``. One array less means no runtime alias check, which would
    otherwise send a loop whose output is its input to the scalar fallback.

    The two-array kernel returns False, writing nothing, when g and x overlap other than
    element for element (the caller then copies x), else True: a check that costs nothing
    next to NumPy's ``may_share_memory`` (0.2 µs a call)."""
    tail = _last_block(fn, nin)
    prepare, finish, _ = _stages(fn)
    if nin == 1:
        # Where f(x) is x for some x (relu, leaky_relu for x > 0), LLVM drops the store of the
        # unchanged value, and the rest becomes a masked store. Without AVX-512 that is
        # vmaskmovps, microcoded on AMD Zen: float32 relu in place ran at 5.6x the memory
        # floor on a Zen 3. There the block goes through the buffer and back in whole vectors.
        direct = direct_stores(fn, parallel)

        def kernel(a, *p):
            n = a.size
            nb = n // BLOCK
            for b in prange(nb):
                wide_vectors()
                prefetch_ahead(a, b * BLOCK)
                ab = a[b * BLOCK : (b + 1) * BLOCK]
                P = block_buffer(a)
                prepare(ab, P, *p)
                if direct:  # (a constant: Numba compiles one branch)
                    for j in range(BLOCK):
                        ab[j] = finish(ab[j], P[j], *p)
                else:  # (into a fresh buffer: P holds x, and x stored back to P drops too)
                    Q = block_buffer(a)
                    for j in range(BLOCK):
                        Q[j] = finish(ab[j], P[j], *p)
                    store_block_opaque(Q, ab)
            if nb * BLOCK < n:
                tail(a, a, nb * BLOCK, *p)

    else:

        def kernel(g, x, *p):
            if _partial_overlap(g, x):
                return False
            n = x.size
            nb = n // BLOCK
            for b in prange(nb):
                wide_vectors()
                prefetch_ahead_2(g, b * BLOCK)
                prefetch_ahead_2(x, b * BLOCK)
                gb, xb = g[b * BLOCK : (b + 1) * BLOCK], x[b * BLOCK : (b + 1) * BLOCK]
                P = block_buffer(x)
                prepare(xb, P, *p)
                for j in range(BLOCK):
                    gb[j] = gb[j] * finish(xb[j], P[j], *p)
            if nb * BLOCK < n:
                tail(g, x, g, nb * BLOCK, *p)
            return True

    kind = "par" if parallel else "ser"
    return jit_kernel(kernel, f"{fn.__name__}_i{nin}_{kind}", parallel)
