"""A NumPy ufunc whose inner loop is a formula's one-thread SIMD kernel: the small calls'
path, where NumPy's C code does the checks, the allocation and the overlap rules.

``serial_ufunc(fn, nin, dtype, params)`` is a ufunc of one loop (``dtype`` in, ``dtype``
out) over x (nin=1, ``f(x)``) or g and x (nin=2, ``g·f(x)``), with the parameters fixed.
Its inner loop is a compiled C callback, cached on disk like the kernels, that calls the
compiled kernels through pointers handed to it at run time (so they are not compiled into it
again: 0.15-0.6 s to build it, not 1.2-1.5 s):

- contiguous steps: the flat kernel, or the in-place one when the output is the first input
  (the same compiled loops as every other call, so the same bits);
- other steps (strided views, broadcasting), and an output that overlaps an input behind
  it (which NumPy, reading ahead of its writes, does not copy; the kernels refuse it): the
  flat kernel on blocks gathered into buffers on the stack, each written back before the
  next is read (so a view gives the bits its contiguous copy gives).

The kernels handle ±inf and NaN by selects, so they raise floating-point flags that mean
nothing (``inf - inf`` in a branch that is not taken); NumPy would report them as
RuntimeWarnings. The loop clears the flags before it returns, which needs x86-64's MXCSR:
elsewhere ``AVAILABLE`` is False and no such ufunc is built.

A call costs about 0.45 µs plus the arithmetic, against about 1 µs for a Python function
that checks its arguments and calls the kernel's compiled entry point.
"""

from __future__ import annotations

import functools
import hashlib
import platform

import numpy as np
from llvmlite import ir
from numba import carray, types
from numba.core import cgutils
from numba.core.ccallback import CFunc
from numba.extending import intrinsic

from . import _cpu
from ._cpu import same_data

AVAILABLE = platform.machine().lower() in ("x86_64", "amd64")

# void loop(char **args, npy_intp *dimensions, npy_intp *steps, void *data)
_LOOP_ARGS = (
    (types.CPointer(types.voidptr), types.CPointer(types.intp), types.CPointer(types.intp),
     types.voidptr),
    types.void,
)


@intrinsic
def strided_view(typingctx, ptr, n, step, like):
    """A 1-D array of ``n`` elements of ``like``'s dtype at ``ptr``, ``step`` bytes apart
    (any sign, or 0: NumPy's inner-loop steps), owning nothing."""
    if not isinstance(like, types.Array):
        return None
    arrty = types.Array(like.dtype, 1, "A")

    def codegen(context, builder, signature, args):
        p, count, stride, _ = args
        ary = context.make_array(arrty)(context, builder)
        item = context.get_abi_sizeof(context.get_data_type(like.dtype))
        intp = context.get_value_type(types.intp)
        context.populate_array(
            ary, data=builder.bitcast(p, ary.data.type), shape=[count], strides=[stride],
            itemsize=intp(item), meminfo=None,
        )
        return ary._getvalue()

    return arrty(ptr, n, step, like), codegen


@intrinsic
def clear_fp_flags(typingctx):
    """Clear the six exception flags of x86-64's MXCSR (rounding and flush modes stay)."""

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        i8p = ir.IntType(8).as_pointer()
        slot = cgutils.alloca_once(builder, i32)
        raw = builder.bitcast(slot, i8p)
        fnty = ir.FunctionType(ir.VoidType(), [i8p])
        store = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse.stmxcsr")
        load = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse.ldmxcsr")
        builder.call(store, [raw])
        builder.store(builder.and_(builder.load(slot), i32(~0x3F)), slot)
        builder.call(load, [raw])
        return context.get_dummy_value()

    return types.none(), codegen


@functools.cache
def _native_call(signature):
    """An intrinsic ``call(data, i, arrays, params)``: call the Numba-compiled function of
    ``signature`` whose address is the ``i``-th pointer at ``data``, with the arrays and the
    parameters (its star-args tuple) given as two tuples; False if it returned False, else
    True. Through a pointer known only at run time the kernel is neither inlined nor compiled
    again into the loop (which took 1-1.5 s), and the loop's disk-cached code holds no address
    of this process."""
    restype, argtys = signature.return_type, tuple(signature.args)

    @intrinsic
    def call(typingctx, data, index, arrays, params):
        if len(arrays) + 1 != len(argtys):
            return None

        def codegen(context, builder, sig, llargs):
            ptrs, i, arrs, p = llargs
            fnty = context.call_conv.get_function_type(restype, argtys)
            slots = builder.bitcast(ptrs, context.get_value_type(types.intp).as_pointer())
            fn = builder.inttoptr(builder.load(builder.gep(slots, [i])), fnty.as_pointer())
            vals = [*cgutils.unpack_tuple(builder, arrs, len(arrays)), p]
            _, res = context.call_conv.call_function(builder, fn, restype, argtys, vals)
            return res if restype == types.boolean else cgutils.true_bit

        return types.boolean(data, index, arrays, params), codegen

    return call


def _loop(nin: int, dtype: np.dtype, params: tuple, signatures: tuple):
    """The inner loop's Python source, closed over the typed parameters. ``data`` points at
    the addresses of the compiled flat kernel (0) and in-place kernel (1), of ``signatures``."""
    item, P, dt, B = dtype.itemsize, params, dtype.type, _cpu.BLOCK
    flat, inplace = (_native_call(s) for s in signatures)
    block_buffer = _cpu.block_buffer
    if nin == 1:

        def loop(args, dims, steps, data):
            n = dims[0]
            done = False
            if steps[0] == item and steps[1] == item:
                x, out = carray(args[0], (n,), dt), carray(args[1], (n,), dt)
                if same_data(x, out):
                    done = inplace(data, 1, (x,), P)
                else:  # (False: out overlaps x, behind it, which NumPy does not copy)
                    done = flat(data, 0, (x, out), P)
            if not done:
                x = strided_view(args[0], n, steps[0], carray(args[1], (0,), dt))
                out = strided_view(args[1], n, steps[1], x)
                bx, bo = block_buffer(x), block_buffer(x)
                bx[:] = 0
                for s in range(0, n, B):
                    m = min(B, n - s)
                    for j in range(m):
                        bx[j] = x[s + j]
                    flat(data, 0, (bx, bo), P)
                    for j in range(m):
                        out[s + j] = bo[j]
            clear_fp_flags()

    else:

        def loop(args, dims, steps, data):
            n = dims[0]
            done = False
            if steps[0] == item and steps[1] == item and steps[2] == item:
                g, x = carray(args[0], (n,), dt), carray(args[1], (n,), dt)
                out = carray(args[2], (n,), dt)
                if same_data(g, out):
                    done = inplace(data, 1, (g, x), P)
                else:
                    done = flat(data, 0, (g, x, out), P)
            if not done:
                g = strided_view(args[0], n, steps[0], carray(args[2], (0,), dt))
                x = strided_view(args[1], n, steps[1], g)
                out = strided_view(args[2], n, steps[2], g)
                bg, bx, bo = block_buffer(g), block_buffer(g), block_buffer(g)
                bg[:] = 0
                bx[:] = 0
                for s in range(0, n, B):
                    m = min(B, n - s)
                    for j in range(m):
                        bg[j] = g[s + j]
                        bx[j] = x[s + j]
                    flat(data, 0, (bg, bx, bo), P)
                    for j in range(m):
                        out[s + j] = bo[j]
            clear_fp_flags()

    return loop


def _native(kernel, dtype: np.dtype, narrays: int, params: tuple):
    """(address, signature, library) of ``kernel``'s compiled code for ``narrays``
    contiguous 1-D ``dtype`` arrays and ``params`` (compiled, or loaded from the disk cache,
    now if need be)."""
    kernel(*[np.empty(0, dtype)] * narrays, *params)
    cres = _cpu.flat_overload(kernel, dtype, narrays)
    if cres is None:
        raise LookupError(f"no compiled {kernel} for {narrays} {dtype} arrays")
    lib = cres.library
    return lib.get_pointer_to_function(cres.fndesc.llvm_func_name), cres.signature, lib


def serial_ufunc(fn, nin: int, dtype: np.dtype, params: tuple):
    """The ufunc ``dtype``×nin -> ``dtype`` computing ``fn`` (times g for nin=2) with the
    typed ``params`` (a tuple of ``dtype`` scalars), on one thread; None where it cannot be
    built (not x86-64, or a Numba without ``fromfunc``)."""
    return _build(fn, nin, np.dtype(dtype), params) if AVAILABLE else None


@functools.cache
def _build(fn, nin: int, dtype: np.dtype, params: tuple):
    try:
        from numba.np.ufunc import _internal
        from numba.np.ufunc.ufuncbuilder import parse_identity
    except ImportError:  # pragma: no cover - another Numba layout
        return None
    kernels = (_cpu.flat_kernel(fn, nin, False), _cpu.inplace_kernel(fn, nin, False))
    native = [_native(k, dtype, nin + i, params) for i, k in zip((1, 0), kernels)]
    addresses = np.array([a for a, _, _ in native], np.intp)
    tag = hashlib.sha256(repr((params, dtype.str)).encode()).hexdigest()[:8]
    name = f"{fn.__name__}_uf{nin}_{dtype.name}_{tag}"
    loop = _loop(nin, dtype, params, tuple(sig for _, sig, _ in native))
    cf = CFunc(_cpu.unique_name(loop, name), _LOOP_ARGS, {},
               {"error_model": "numpy", "fastmath": {"contract"}})
    _cpu.attach_cache(cf, cf._pyfunc)
    cf.compile()
    keep = [cf, addresses, kernels, [lib for _, _, lib in native]]
    return _internal.fromfunc(
        name, None, [cf.address], [[dtype.num] * (nin + 1)], nin, 1,
        [addresses.ctypes.data], keep, parse_identity(None),
    )
