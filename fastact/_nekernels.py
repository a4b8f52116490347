"""CPU kernels of the non-elementwise activations: softmax, log-softmax, PReLU, maxout.

Kernels work on canonical strided views built by ``_nonelementwise``:

- *rows*: 2-D ``(R, n)``, the reduction axis last (contiguous rows are the fast case);
- *cols*: 3-D ``(P, n, Q)``, the reduction axis in the middle and ``Q`` the dimension of
  smallest stride, processed in blocks of ``B`` columns so that a block stays in cache;
- PReLU: ``(P, C, Q)`` or ``(P, C)`` with channels on axis 1;
- maxout: ``x`` as ``(P, G, k, Q)``, the result as ``(P, G, Q)``.

Each kernel is written once with ``prange`` and compiled twice by ``_cpu.jit_kernel`` (one
thread, or all threads). Every reduction has a fixed order that depends on the shape only,
never on the thread count, so ``"cpu"`` and ``"parallel"`` agree bitwise. Factories are
memoised; nothing is compiled at import.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from . import _formulas as F
from . import _vmath as vm
from ._cpu import jit_kernel, same_data, unique_name, wide_vectors

# Reductions may be reassociated (they become SIMD partial sums; the order is still fixed
# by the code and the shape). Elementwise work keeps fastact's flags.
_reduce = njit(error_model="numpy", fastmath={"reassoc", "contract"})
_plain = njit(error_model="numpy", fastmath={"contract"})

# Row length (elements) up to which log-softmax computes e^(x-m) in one scratch chunk.
CHUNK = 2048


# ------------------------------------------------------------------ row helpers
def rowmax(a):
    """max of a 1-D array (-inf for an empty one); NaN need not win (callers don't care)."""
    m = -np.inf
    for v in a:
        m = v if v > m else m
    return type(a[0])(m) if a.size else m


def _key_consts(dtype):
    """(int type, float type, smallest int, magnitude mask, sign shift) for the integer
    keys of float32 or float64 bits, or None for other dtypes."""
    if dtype not in (types.float32, types.float64):
        return None
    it = np.int32 if dtype == types.float32 else np.int64
    ft = np.float32 if dtype == types.float32 else np.float64
    return it, ft, it(np.iinfo(it).min), it(np.iinfo(it).max), it(8 * it(0).itemsize - 1)


@_plain
def _order_key(k, sh, mask):
    """The bits ``k`` of a float as a signed integer that orders as the float does (the
    magnitude bits of negatives flipped); its own inverse. (Casts: Numba widens int32.)"""
    t = type(k)
    return t(k ^ t(t(k >> sh) & mask))


@overload(rowmax)
def _ol_rowmax(a):
    """Contiguous rows: an integer max over ``_order_key`` of the float bits (LLVM
    vectorizes integer max reductions, not float ones). Strided rows: 8 float chains."""
    kc = _key_consts(a.dtype) if a.layout == "C" else None
    if kc is not None:
        it, ft, low, mask, sh = kc

        def impl_key(a):
            b = a.view(it)
            m = low
            for i in range(b.size):
                k = _order_key(b[i], sh, mask)
                m = k if k > m else m
            r = it(_order_key(m, sh, mask)).view(ft)
            return r if b.size else ft(-np.inf)

        return impl_key

    def impl(a):
        n = a.size
        T = a.dtype.type
        m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = T(-np.inf)
        n8 = n - n % 8
        for i in range(0, n8, 8):
            v = a[i]
            m0 = v if v > m0 else m0
            v = a[i + 1]
            m1 = v if v > m1 else m1
            v = a[i + 2]
            m2 = v if v > m2 else m2
            v = a[i + 3]
            m3 = v if v > m3 else m3
            v = a[i + 4]
            m4 = v if v > m4 else m4
            v = a[i + 5]
            m5 = v if v > m5 else m5
            v = a[i + 6]
            m6 = v if v > m6 else m6
            v = a[i + 7]
            m7 = v if v > m7 else m7
        for i in range(n8, n):
            v = a[i]
            m0 = v if v > m0 else m0
        for v in (m1, m2, m3, m4, m5, m6, m7):
            m0 = v if v > m0 else m0
        return m0

    return impl


@_reduce
def rowsum(a):
    s = a.dtype.type(0)
    for i in range(a.size):
        s += a[i]
    return s


@_reduce
def rowdot(a, b):
    s = a.dtype.type(0)
    for i in range(a.size):
        s += a[i] * b[i]
    return s


@_plain
def _exp_into(x, m, out):
    """out[i] = e^(x[i] - m), m the row's max (``exp_neg``: x - m <= 0, or NaN). In place
    gets its own one-array loop: LLVM's runtime alias check would send an x that *is* out
    to the scalar fallback."""
    wide_vectors()
    if same_data(x, out):
        for i in range(out.size):
            out[i] = vm.exp_neg(out[i] - m)
    else:
        for i in range(x.size):
            out[i] = vm.exp_neg(x[i] - m)


def _pass_with_next_max(op, plain_pass, name: str):
    """``f(x, m, c, out, nxt)``: out[i] = op(x[i], m, c) over a row, returning rowmax(nxt),
    the next row's max, in the same loop: that row's reads from memory then overlap this
    row's arithmetic instead of following it. ``plain_pass(x, m, c, out)`` is the pass alone
    (used, then rowmax, for strided rows). ``name`` names the generated functions
    (``unique_name``: they are compiled into cached kernels)."""

    def f(x, m, c, out, nxt):
        plain_pass(x, m, c, out)
        return rowmax(nxt)

    separate = _plain(unique_name(f, name))

    @overload(f)
    def _ol(x, m, c, out, nxt):
        kc = _key_consts(nxt.dtype) if nxt.layout == "C" else None
        if kc is None:
            return lambda x, m, c, out, nxt: separate(x, m, c, out, nxt)
        it, ft, low, mask, sh = kc  # rowmax's integer keys, in the same loop as op

        def impl(x, m, c, out, nxt):
            wide_vectors()
            b = nxt.view(it)
            km = low
            if same_data(x, out):  # in place: one array, no alias check
                for i in range(out.size):
                    out[i] = op(out[i], m, c)
                    k = _order_key(b[i], sh, mask)
                    km = k if k > km else km
            else:
                for i in range(x.size):
                    out[i] = op(x[i], m, c)
                    k = _order_key(b[i], sh, mask)
                    km = k if k > km else km
            r = it(_order_key(km, sh, mask)).view(ft)
            return r if b.size else ft(-np.inf)

        return unique_name(impl, f"{name}_fused")

    return f


@_plain
def _exp_minus(v, m, c):
    return vm.exp_neg(v - m)


@_plain
def _minus_two(v, m, c):
    return (v - m) - c


@_plain
def _scale(a, r):
    wide_vectors()
    for i in range(a.size):
        a[i] *= r


@_plain
def _shift(x, m, c, out):
    """out[i] = (x[i] - m) - c (m + c would round away c next to a huge m)."""
    wide_vectors()
    if same_data(x, out):
        for i in range(out.size):
            out[i] = (out[i] - m) - c
    else:
        for i in range(x.size):
            out[i] = (x[i] - m) - c


@_plain
def _log(s):
    """log s for s >= 1 (the sum of e^(x - max) includes e^0): log1p(s - 1) is exact-ish."""
    return vm.log1p(s - type(s)(1))


exp_into_max = _pass_with_next_max(
    _exp_minus, _plain(lambda x, m, c, out: _exp_into(x, m, out)), "exp_into_max"
)
shift_into_max = _pass_with_next_max(_minus_two, _shift, "shift_into_max")


def _name(kind: str, parallel: bool) -> str:
    return f"fastact_ne_{kind}_{'par' if parallel else 'ser'}"


# ------------------------------------------------------------------ softmax rows
@functools.cache
def softmax_rows(log: bool, parallel: bool):
    """kernel(x, out, rb) over (R, n) views: rows in blocks of ``rb`` per task."""

    def kernel(x, out, rb):
        R, n = x.shape
        nb = (R + rb - 1) // rb
        for b in prange(nb):
            tmp = np.empty(min(n, CHUNK) if log else 0, x.dtype)
            r0, r1 = b * rb, min(R, b * rb + rb)
            m = rowmax(x[r0])  # later rows' maxima come from the previous row's last pass
            for r in range(r0, r1):
                xr = x[r]
                orow = out[r]
                last = r + 1 == r1  # (no next row: the plain pass)
                if log:
                    s = xr.dtype.type(0)
                    for c0 in range(0, n, CHUNK):
                        c1 = min(n, c0 + CHUNK)
                        t = tmp[: c1 - c0]
                        _exp_into(xr[c0:c1], m, t)
                        s += rowsum(t)
                    if last:
                        _shift(xr, m, _log(s), orow)
                    else:
                        m = shift_into_max(xr, m, _log(s), orow, x[r + 1])
                else:
                    m_row = m
                    if last:
                        _exp_into(xr, m_row, orow)
                    else:
                        m = exp_into_max(xr, m_row, m_row, orow, x[r + 1])
                    _scale(orow, xr.dtype.type(1) / rowsum(orow))

    return jit_kernel(kernel, _name(f"softmax_rows_{int(log)}", parallel), parallel)


@functools.cache
def softmax_cols(log: bool, parallel: bool):
    """kernel(x, out, bw) over (P, n, Q) views: reduction over axis 1, blocks of ``bw``
    columns of Q per task (each block's n x bw elements meant to stay in cache)."""

    def kernel(x, out, bw):
        P, n, Q = x.shape
        nq = (Q + bw - 1) // bw
        for t in prange(P * nq):
            p = t // nq
            q0 = (t % nq) * bw
            w = min(Q, q0 + bw) - q0
            T = x.dtype.type
            m = np.full(w, T(-np.inf), x.dtype)
            s = np.zeros(w, x.dtype)
            for j in range(n):
                for q in range(w):
                    v = x[p, j, q0 + q]
                    m[q] = v if v > m[q] else m[q]
            for j in range(n):
                for q in range(w):
                    e = vm.exp_neg(x[p, j, q0 + q] - m[q])
                    s[q] += e
                    if not log:
                        out[p, j, q0 + q] = e
            if log:
                for q in range(w):
                    s[q] = _log(s[q])
                for j in range(n):
                    for q in range(w):
                        out[p, j, q0 + q] = (x[p, j, q0 + q] - m[q]) - s[q]
            else:
                for q in range(w):
                    s[q] = T(1) / s[q]
                for j in range(n):
                    for q in range(w):
                        out[p, j, q0 + q] *= s[q]

    return jit_kernel(kernel, _name(f"softmax_cols_{int(log)}", parallel), parallel)


# ------------------------------------------------------------------ softmax backward
@functools.cache
def softmax_bwd_rows(log: bool, parallel: bool):
    """kernel(g, y, out, rb): softmax: y(g - Σgy); log-softmax: g - e^y Σg; rows (R, n)."""

    def kernel(g, y, out, rb):
        R, n = y.shape
        nb = (R + rb - 1) // rb
        for b in prange(nb):
            for r in range(b * rb, min(R, b * rb + rb)):
                gr = g[r]
                yr = y[r]
                orow = out[r]
                if log:
                    s = rowsum(gr)
                    for i in range(n):
                        orow[i] = gr[i] - vm.exp(yr[i]) * s
                else:
                    d = rowdot(gr, yr)
                    for i in range(n):
                        orow[i] = yr[i] * (gr[i] - d)

    return jit_kernel(kernel, _name(f"softmax_bwd_rows_{int(log)}", parallel), parallel)


@functools.cache
def softmax_bwd_cols(log: bool, parallel: bool):
    """kernel(g, y, out, bw) over (P, n, Q) views, reduction over axis 1."""

    def kernel(g, y, out, bw):
        P, n, Q = y.shape
        nq = (Q + bw - 1) // bw
        for t in prange(P * nq):
            p = t // nq
            q0 = (t % nq) * bw
            w = min(Q, q0 + bw) - q0
            s = np.zeros(w, y.dtype)
            for j in range(n):
                for q in range(w):
                    if log:
                        s[q] += g[p, j, q0 + q]
                    else:
                        s[q] += g[p, j, q0 + q] * y[p, j, q0 + q]
            for j in range(n):
                for q in range(w):
                    gv = g[p, j, q0 + q]
                    yv = y[p, j, q0 + q]
                    if log:
                        out[p, j, q0 + q] = gv - vm.exp(yv) * s[q]
                    else:
                        out[p, j, q0 + q] = yv * (gv - s[q])

    return jit_kernel(kernel, _name(f"softmax_bwd_cols_{int(log)}", parallel), parallel)


# ------------------------------------------------------------------ PReLU
# prelu(x, w) is leaky_relu(x, negative_slope=w) and prelu'(x) is leaky_relu'(x): the very
# same scalar formulas, so the kinks, signed zeros and NaN agree with fastact.leaky_relu.


@functools.cache
def prelu_map(grad: bool, three_d: bool, parallel: bool):
    """out = prelu(x, w) or prelu'(x, w); views (P, C, Q) (tasks: p, c and blocks of ``qb``
    of Q) or (P, C) (channels innermost); w of length C."""
    fn = F.leaky_relu_grad if grad else F.leaky_relu
    if three_d:

        def kernel(x, w, out, qb):
            P, C, Q = x.shape
            nq = (Q + qb - 1) // qb
            for t in prange(P * C * nq):
                p = t // (C * nq)
                c = (t // nq) % C
                q0 = (t % nq) * qb
                wc = w[c]
                for q in range(q0, min(Q, q0 + qb)):
                    out[p, c, q] = fn(x[p, c, q], wc)

    else:

        def kernel(x, w, out, qb):
            P, C = x.shape
            for p in prange(P):
                for c in range(C):
                    out[p, c] = fn(x[p, c], w[c])

    kind = f"prelu_{'grad' if grad else 'f'}_{3 if three_d else 2}d"
    return jit_kernel(kernel, _name(kind, parallel), parallel)


@_reduce
def _prelu_bwd_line(x, g, out, wc):
    """out = g·prelu'(x) along one line of one channel; returns Σ (x > 0 ? 0 : x·g)."""
    T = x.dtype.type
    s = T(0)
    for q in range(x.size):
        v = x[q]
        gv = g[q]
        out[q] = gv * F.leaky_relu_grad(v, wc)
        s += T(0) if v > 0 else v * gv
    return s


@functools.cache
def prelu_bwd(three_d: bool, parallel: bool):
    """kernel(g, x, w, out, partial, pb, qb): g·prelu'(x) into out, and partial sums of the
    weight gradient into ``partial``: row ``k·nq + j`` holds rows [k·pb, (k+1)·pb) of P and
    block j (width qb) of Q. pb and qb depend on the shape only, so the sum order is fixed."""
    fn = F.leaky_relu_grad
    if three_d:

        def kernel(g, x, w, out, partial, pb, qb):
            P, C, Q = x.shape
            nq = (Q + qb - 1) // qb
            K = partial.shape[0] // nq
            for t in prange(K * C * nq):
                k = t // (C * nq)
                c = (t // nq) % C
                j = t % nq
                q0 = j * qb
                q1 = min(Q, q0 + qb)
                wc = w[c]
                s = x.dtype.type(0)
                for p in range(k * pb, min(P, k * pb + pb)):
                    s += _prelu_bwd_line(x[p, c, q0:q1], g[p, c, q0:q1], out[p, c, q0:q1], wc)
                partial[k * nq + j, c] = s

    else:

        def kernel(g, x, w, out, partial, pb, qb):
            P, C = x.shape
            K = partial.shape[0]
            for k in prange(K):
                T = x.dtype.type
                acc = np.zeros(C, x.dtype)
                for p in range(k * pb, min(P, k * pb + pb)):
                    for c in range(C):
                        v = x[p, c]
                        gv = g[p, c]
                        out[p, c] = gv * fn(v, w[c])
                        acc[c] += T(0) if v > 0 else v * gv
                for c in range(C):
                    partial[k, c] = acc[c]

    return jit_kernel(kernel, _name(f"prelu_bwd_{3 if three_d else 2}d", parallel), parallel)


# ------------------------------------------------------------------ maxout
@_plain
def _beats(v, m):
    """v replaces the running max m: larger, or the first NaN (np.max/np.argmax rules)."""
    return v > m or (v != v and m == m)


@functools.cache
def maxout_fwd(parallel: bool):
    """kernel(x, out): x (P, G, k, Q) -> out (P, G, Q), max over k, NaN wins."""

    def kernel(x, out):
        P, G, K, Q = x.shape
        for t in prange(P * G):
            p = t // G
            g = t % G
            for q in range(Q):
                out[p, g, q] = x[p, g, 0, q]
            for j in range(1, K):
                for q in range(Q):
                    v = x[p, g, j, q]
                    o = out[p, g, q]
                    out[p, g, q] = v if _beats(v, o) else o

    return jit_kernel(kernel, _name("maxout_fwd", parallel), parallel)


@functools.cache
def maxout_bwd(parallel: bool):
    """kernel(g, x, out): g (P, G, Q), x and out (P, G, k, Q); each gradient goes to the
    first arg-max of its group (the first NaN if there is one), zeros elsewhere."""

    def kernel(g, x, out):
        P, G, K, Q = x.shape
        for t in prange(P * G):
            p = t // G
            gi = t % G
            for q in range(Q):
                best = 0
                m = x[p, gi, 0, q]
                for j in range(1, K):
                    v = x[p, gi, j, q]
                    if _beats(v, m):
                        m = v
                        best = j
                gv = g[p, gi, q]
                z = x.dtype.type(0)
                for j in range(K):
                    out[p, gi, j, q] = gv if j == best else z

    return jit_kernel(kernel, _name("maxout_bwd", parallel), parallel)
