"""Elementary math for the scalar formulas, generic over float32 and float64.

Every function here takes scalars of one float type and returns that type. Each is a plain
Python function (so it runs as-is under the CUDA simulator and in pure Python) with a Numba
``@overload`` that picks the float32 or float64 implementation at compile time.

Contract (what ``_formulas`` relies on):

- ``exp, expm1, log1p, tanh``: faithful to ~1 ULP, C99 special values, subnormal results kept.
- ``exp_neg(x)`` = exp(x), the same bits, for x <= 0 only (NaN passes): cheaper without
  AVX-512 (2^k of a subnormal result in one step after an exact one, not two).
- ``expm1_neg(x)`` = expm1(x), the same bits, for x <= 0 only (NaN passes): a few
  operations cheaper (no upper clamp, no halving of 2^k); ``expm1_pos(x)`` the same for
  0 <= x <= 64 (no clamp, no special case: -0 gives +0).
- ``log1p_unit(t)`` = log1p(t) for t in [0, 1] only (NaN passes): cheaper in float32.
- ``xexp(a, x)`` = a·e^x rounded once, without the intermediate underflow of e^x
  (e^x may be subnormal or zero while a·e^x is a normal number); ``xexp_neg(a, x, dx)``
  = a·e^(x+dx) for x <= 0, a tiny dx and |a| < 2^32 that is at least 2^-62 (float32;
  2^-422 float64) where x < -41 (-346), without the checks for inf, NaN and overflow, and
  with one scaling step without AVX-512; ``ldexp_low(y, k)`` = ldexp(y, k) under the same
  condition on y (k < -60, -500), in one step.
- ``erfcx(x)`` = e^(x²)·erfc(x) for x >= 0 (decreasing from 1 to 1/(x·√π)).
- ``phicx(x)`` = e^(x²/2)·Φ(-x) for 0 <= x <= 1024 (or NaN), the same for the normal
  distribution (beyond 1024 the first-order correction of float32 loses to cancellation).
- ``xmtanh(x)`` = x − tanh x without cancellation near 0, = ``xmtanh_from(x,
  xmtanh_near0(x))``: its polynomial branch (|x| − tanh |x| for |x| < 1) and the rest, for
  formulas that take the two in passes of their own; ``tanh_sq(x)`` = ``tanh_sq_from(x,
  tanh_near0(x))`` the same way.
- ``fma(a, b, c)`` = a·b + c with one rounding.
- ``sq_split(x)`` = (hi, lo) with hi + lo == x·x exactly.

The Numba implementations are branch-free (selects, no data-dependent loops, no ``math.*``
transcendental calls, which are scalar libm calls), so loops over them vectorize (AVX-512 zmm
/ AVX2 ymm); float32 is computed in float32 throughout. Building blocks:

- argument reduction x = k·ln2 + r, |r| <= ln2/2 (k by the 1.5·2^p rounding trick, r with two
  FMAs) and a minimax polynomial for e^r − 1 = r + r²·P(r); 2^k applied by exponent-bit
  arithmetic (``_scale2``), in two steps where the result may be subnormal, or for k <= 0
  an exact multiply by 2^-64 (2^-600) and one step;
- log1p: 1 + x = m·2^k with m in [√½, √2), the rounding error of 1 + x folded back into
  f = m − 1; log1p(f) by a minimax polynomial (float32) or fdlibm's s = f/(2+f) form (float64);
- tanh (float32): e/(e + 2) with e = expm1(2|x|), one branch-free expression;
- tanh (float64) and x − tanh x share G(x²) = (x − tanh x)/x³ (minimax on |x| < 1); beyond, with
  t = e^(-2|x|), tanh|x| = 1 − 2t/(1+t) and |x| − tanh|x| = (|x| − 1) + 2t/(1+t);
- erfcx: (1 + 2x)·erfcx(x) as a polynomial in t = (x − 3)/(x + 3) on [0, ∞) (the mapping of
  Shepherd & Laframboise, 1981), divided by 1 + 2x.

Coefficients are relative-error minimax fits made with ``tests/_vmath_fit.py`` (mpmath Remez).
The pure-Python versions go through NumPy/``math`` in float64 (they serve the CUDA simulator).
"""

from __future__ import annotations

import math
import os
from fractions import Fraction

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload, register_jitable

from . import _piecewise

_F32 = types.float32
_F64 = types.float64

# Options of every Numba implementation here: NumPy error model (a float division must not
# get a ZeroDivisionError branch, which would stop vectorization) and FMA contraction only.
_JIT = {"error_model": "numpy", "fastmath": {"contract"}}

# --------------------------------------------------------------------------- fma


def fma(a, b, c):
    """a*b + c with a single rounding (exact rational arithmetic in pure Python)."""
    t = type(a)
    if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(c)):
        return t(a * b + c)
    return t(float(Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))))


@intrinsic
def _llvm_fma(typingctx, a, b, c):
    if not (a == b == c and a in (_F32, _F64)):
        return None
    sig = a(a, b, c)

    def codegen(context, builder, signature, args):
        ty = args[0].type
        name = "llvm.fma.f32" if a == _F32 else "llvm.fma.f64"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty] * 3), name)
        return builder.call(fn, args)

    return sig, codegen


@overload(fma)
def _ol_fma(a, b, c):
    if a == b == c and a in (_F32, _F64):
        return lambda a, b, c: _llvm_fma(a, b, c)
    return None


def copysign(a, b):
    """|a| with the sign of b (one bitwise select; NaN a stays NaN)."""
    return type(a)(math.copysign(a, b))


overload(copysign)(
    lambda a, b: (lambda a, b: _copysign(a, b)) if a == b and a in (_F32, _F64) else None
)


def sq_split(x):
    """(hi, lo) with hi = fl(x*x) and hi + lo = x*x exactly."""
    hi = x * x
    return hi, fma(x, x, -hi)


@overload(sq_split)
def _ol_sq_split(x):
    if x in (_F32, _F64):

        def impl(x):
            hi = x * x
            return hi, fma(x, x, -hi)

        return impl
    return None


# ------------------------------------------------------- bit-level intrinsics
# (float32: 32-bit integers, 8-bit exponent; float64: 64-bit, 11-bit; all in the float's
# own lane width, so they vectorize at full width.)


def _layout(t):
    """(integer type, mantissa bits, exponent bias) of float type t."""
    return (ir.IntType(32), 23, 127) if t == _F32 else (ir.IntType(64), 52, 1023)


def _target_features() -> frozenset[str]:
    """The CPU features that the code Numba compiles here may use: this CPU's, or those that
    NUMBA_CPU_FEATURES, NUMBA_CPU_NAME=generic (none) or NUMBA_ENABLE_AVX=0 choose instead."""
    try:
        from numba.core import config
        from numba.core.codegen import get_host_cpu_features

        features = config.CPU_FEATURES
        if features is None:
            features = get_host_cpu_features()
        return frozenset(f[1:] for f in features.split(",") if f.startswith("+"))
    except Exception:  # unknown: the portable forms
        return frozenset()


TARGET_FEATURES = _target_features()


def _target_has_avx512f() -> bool:
    """Whether the compiled code may use AVX-512F (with it off, a table's ``vpermt2ps`` made
    LLVM abort the process)."""
    return "avx512f" in TARGET_FEATURES


# FASTACT_NO_AVX512=1 forces the portable forms (the tests run both)
_AVX512 = _target_has_avx512f() and not os.environ.get("FASTACT_NO_AVX512")
_SCALEF = _AVX512


def _host_cpu_name() -> str:
    """LLVM's name for this CPU (``znver4``, ``rocketlake``...), or "" where unknown."""
    try:
        from llvmlite import binding as ll

        return ll.get_host_cpu_name()
    except Exception:
        return ""


# an AMD Zen (LLVM tunes for it by the names "znver*"), where some choices differ from
# Intel's: no software prefetch (``_cpu``), no SECH2 table, the far parts' passes for float64
_HOST_CPU = _host_cpu_name()
ZEN = _HOST_CPU.startswith("znver")


def _freeze(builder, value):
    """LLVM's ``freeze`` of value (llvmlite has no builder method): a poison value (fptosi
    of a NaN) becomes some fixed value instead of undefined behaviour; costs nothing."""
    inst = ir.instructions.Instruction(builder.block, value.type, "freeze", [value])
    builder._insert(inst)
    return inst


@intrinsic
def _ldexp_scalef(typingctx, y, k):
    """y·2^k for an integral float k, rounded once (subnormal results, 0 and ±inf exact):
    LLVM's ``ldexp``, one ``vscalef`` instruction per vector on AVX-512. Only built there:
    elsewhere LLVM lowers a vector ``ldexp`` to one libm call per element. A NaN k (where
    y is NaN too: exp_neg's NaN passes) gives NaN, not poison."""
    if not (y == k and y in (_F32, _F64)):
        return None

    def codegen(context, builder, signature, args):
        yv, kv = args
        i32 = ir.IntType(32)
        suffix = "f32" if y == _F32 else "f64"
        fnty = ir.FunctionType(yv.type, [yv.type, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.ldexp.{suffix}.i32")
        return builder.call(fn, [yv, _freeze(builder, builder.fptosi(kv, i32))])

    return y(y, k), codegen


def _shifted_k(builder, kv, ity, mbits):
    """The bits of 2^k less the bias, k an integral float: k + 1.5·2^p (p the mantissa bits)
    has k in its low bits, shifted into the exponent field ((bits of 1.5·2^p) << p is 0 in
    the integer width). No float-to-int conversion, so a NaN k gives some finite scale, not
    LLVM poison (NaN reaches the result through y, which is NaN wherever k is)."""
    shifted = builder.fadd(kv, ir.Constant(kv.type, 1.5 * 2.0**mbits))
    return builder.shl(builder.bitcast(shifted, ity), ity(mbits))


def _biased(ity, mbits, bias, offset):
    """The integer constant that makes ``_shifted_k`` the bits of 2^(k + offset)."""
    return ity(((bias + offset) << mbits) % (1 << ity.width))


def _scale2_by(offset32: int, offset64: int):
    """Intrinsic ``(y, k)`` -> y·2^(k + offset), offset an integer per float type, for an
    integral float k with 2^(k + offset) a normal number (no range check): the offset costs
    nothing (it is in the integer constant that adds the bias)."""

    @intrinsic
    def scale(typingctx, y, k):
        if not (y == k and y in (_F32, _F64)):
            return None

        def codegen(context, builder, signature, args):
            yv, kv = args
            ity, mbits, bias = _layout(y)
            offset = offset32 if y == _F32 else offset64
            e = builder.add(_shifted_k(builder, kv, ity, mbits), _biased(ity, mbits, bias, offset))
            return builder.fmul(yv, builder.bitcast(e, yv.type))

        return y(y, k), codegen

    return scale


@intrinsic
def _scale2_deep_if(typingctx, y, k, deep):
    """y·2^(k + K_ADD) where deep, else y·2^k (one select of two integer constants)."""
    if not (y == k and y in (_F32, _F64) and deep == types.boolean):
        return None

    def codegen(context, builder, signature, args):
        yv, kv, dv = args
        ity, mbits, bias = _layout(y)
        add = _K_ADD32 if y == _F32 else _K_ADD64
        c = builder.select(dv, _biased(ity, mbits, bias, add), _biased(ity, mbits, bias, 0))
        e = builder.add(_shifted_k(builder, kv, ity, mbits), c)
        return builder.fmul(yv, builder.bitcast(e, yv.type))

    return y(y, k, deep), codegen


# the exact pre-scaling of the deep steps: y·2^-K_ADD first, then 2^(k + K_ADD)
_K_ADD32, _K_ADD64 = 64, 600

_scale2 = _scale2_by(0, 0)  # y·2^k
_scale2_deep = _scale2_by(_K_ADD32, _K_ADD64)  # y·2^(k + K_ADD)
_scale2_half = _scale2_by(-1, -1)  # y·2^(k - 1)


@intrinsic
def _log_split(typingctx, u):
    """(m, k) with u = m·2^k, m in [√½, √2), k an integral float; u positive and normal."""
    if u not in (_F32, _F64):
        return None
    rty = types.UniTuple(u, 2)

    def codegen(context, builder, signature, args):
        (uv,) = args
        ity, mbits, bias = _layout(u)
        one = bias << mbits
        sqrth = 0x3F3504F3 if u == _F32 else 0x3FE6A09E667F3BCD  # bits of √½
        b = builder.add(builder.bitcast(uv, ity), ity(one - sqrth))
        k = builder.sub(builder.ashr(b, ity(mbits)), ity(bias))
        mb = builder.add(builder.and_(b, ity((1 << mbits) - 1)), ity(sqrth))
        m = builder.bitcast(mb, uv.type)
        return context.make_tuple(builder, rty, [m, builder.sitofp(k, uv.type)])

    return rty(u), codegen


@intrinsic
def _copysign(typingctx, a, b):
    """|a| with the sign of b."""
    if not (a == b and a in (_F32, _F64)):
        return None

    def codegen(context, builder, signature, args):
        ty = args[0].type
        name = "llvm.copysign.f32" if a == _F32 else "llvm.copysign.f64"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty, ty]), name)
        return builder.call(fn, args)

    return a(a, b), codegen


@intrinsic
def _inline_me(typingctx):
    """Mark the LLVM function being compiled ``alwaysinline``.

    The template's entry points (``*_impl``) are inlined into their caller at the Numba IR
    level, so there this marks the scalar formula that uses the math layer: LLVM then
    inlines the formula into the kernel loop (its size would exceed the inliner's
    threshold), which is what lets the loop vectorize.
    """

    def codegen(context, builder, signature, args):
        attrs = builder.function.attributes
        if "noinline" not in attrs:
            attrs.add("alwaysinline")
        return context.get_dummy_value()

    return types.none(), codegen


# ------------------------------------------------------------ coefficients
# Minimax fits from tests/_vmath_fit.py (ascending powers of each polynomial P; the comment
# names the fitted function and its maximum relative error).

# exp degree 6 (e^r = 1 + r + r²·P(r), relative to e^r): max weighted error 3.0574e-9 (2^-28.29)
_EXP_32 = (  # x^2 .. x^6
    4.999999345168875082e-1,
    1.6666520689818719076e-1,
    4.1668387362939124272e-2,
    8.3687098267135609475e-3,
    1.3814613270510327298e-3,
)

# exp degree 11: max weighted error 3.62e-18 (2^-57.94)
_EXP_64 = (  # x^2 .. x^11
    5.0000000000000106168e-1,
    1.6666666666666412772e-1,
    4.1666666666530265426e-2,
    8.3333333334943358251e-3,
    1.3888888943597852002e-3,
    1.9841269506773146288e-4,
    2.4801493136022587834e-5,
    2.7557586272468578232e-6,
    2.7630233977946594562e-7,
    2.5000070311103071138e-8,
)

# expm1 degree 7: max weighted error 2.39e-10 (2^-31.96)
_EXPM1_32 = (  # x^2 .. x^7
    5.0000000441372353817e-1,
    1.6666666370646278592e-1,
    4.1666361036241174024e-2,
    8.3333893457752790083e-3,
    1.3940616928762777153e-3,
    1.9845877188401046543e-4,
)

# expm1 degree 12: max weighted error 2.6012e-19 (2^-61.74)
_EXPM1_64 = (  # x^2 .. x^12
    5.0000000000000000085e-1,
    1.6666666666666676498e-1,
    4.1666666666666508934e-2,
    8.3333333333217007052e-3,
    1.3888888888962314036e-3,
    1.9841269885939472315e-4,
    2.480158717261305618e-5,
    2.7557244403769721558e-6,
    2.7557402611341255693e-7,
    2.5108967627310720502e-8,
    2.0875329779247029557e-9,
)

# log1p32 degree 10: max weighted error 4.0854e-9 (2^-27.87)
_LOG1P_32 = (  # x^2 .. x^10
    -4.999998834628838397e-1,
    3.3333325691988389538e-1,
    -2.5001582965454655083e-1,
    2.000197393747105086e-1,
    -1.6609082507468749225e-1,
    1.4181824956560386301e-1,
    -1.3242988094811879365e-1,
    1.2904434780001704215e-1,
    -7.6217793124133948413e-2,
)

# log1p64 degree 7: max weighted error 2.4634e-18 (2^-58.49)
_LOG1P_64 = (  # x^1 .. x^7
    6.6666666666667344121e-1,
    3.9999999999414679102e-1,
    2.8571428742387475787e-1,
    2.2222198573198152938e-1,
    1.8183564325478339753e-1,
    1.5314050566921681405e-1,
    1.4795949567483936973e-1,
)

# log1p_unit degree 10 (log1p t = t + t²·H(t) on [0, 1]): max weighted error 5.124e-9 (2^-27.54)
_LOG1P_UNIT_32 = (  # x^2 .. x^10
    -4.9999932764072201552e-1,
    3.3330511332102176686e-1,
    -2.4958587532400912747e-1,
    1.9695401070005604141e-1,
    -1.5355397771038312939e-1,
    1.0680557942818602181e-1,
    -5.7664467866390414427e-2,
    2.0204597387900606072e-2,
    -3.318475287385514886e-3,
)

# xmtanh degree 7: max weighted error 5.2859e-9 (2^-27.5)
_XMT_32 = (  # x^0 .. x^7
    3.3333333157136612024e-1,
    -1.3333310695033978049e-1,
    5.39634209467881997e-2,
    -2.1829585435433172916e-2,
    8.6979508982313878259e-3,
    -3.2069534428497723039e-3,
    9.2360910984434358547e-4,
    -1.4282391356205560353e-4,
)

# xmtanh degree 15: max weighted error 1.4209e-17 (2^-55.97)
_XMT_64 = (  # x^0 .. x^15
    3.333333333333333286e-1,
    -1.3333333333333090569e-1,
    5.396825396804674067e-2,
    -2.1869488529139735058e-2,
    8.8632354047410990164e-3,
    -3.5921266808670781252e-3,
    1.4558247011291143585e-3,
    -5.899793319170187787e-4,
    2.3895716104783780252e-4,
    -9.6463005158440979652e-5,
    3.8389951467623005844e-5,
    -1.4606501922546108364e-5,
    4.988038247712406701e-6,
    -1.3793194855786344423e-6,
    2.6334848468921784865e-7,
    -2.5160441733211791233e-8,
)

# (1+2x)·erfcx(x) = P(-1) + (1+t)·S(t), t = (x-3)/(x+3): max weighted error 3.2354e-9 (2^-28.2)
_ERFCX_32_F0 = 0.99999999676455870853
_ERFCX_32 = (  # S, ascending powers of t
    2.5300806006918797339e-1,
    -3.8862911788919794647e-1,
    3.4106693403155786923e-1,
    -2.114230778985221891e-1,
    9.2148043718511645276e-2,
    -2.3829903704109917033e-2,
    6.5589234710278749571e-5,
    2.4296862113548489687e-3,
    -5.5370077623879509487e-4,
    -1.6869682720005079031e-4,
    7.576717002094072516e-5,
)

# (1+2x)·erfcx(x) = P(-1) + (1+t)·S(t), t = (x-3)/(x+3): max weighted error 5.9305e-18 (2^-57.23)
_ERFCX_64_F0 = 0.99999999999999999407
_ERFCX_64 = (  # S, ascending powers of t
    2.5300805826972965143e-1,
    -3.8862916439431084422e-1,
    3.4106687004086213119e-1,
    -2.1142171133809960007e-1,
    9.2148047922688830496e-2,
    -2.3840020578763514886e-2,
    6.9505662070328167935e-5,
    2.4598861546722310599e-3,
    -5.7119581448932720295e-4,
    -2.0863646236605641548e-4,
    1.0347677127148057561e-4,
    2.1622601324186520128e-5,
    -1.6673511093626472846e-5,
    -3.4271119993078707963e-6,
    2.696544666327017875e-6,
    7.7596809317896565445e-7,
    -4.2063243672431812582e-7,
    -1.9613066847198315374e-7,
    5.6110896662541539084e-8,
    4.5841276148777316491e-8,
    -5.0877756517827890235e-9,
    -8.2724117829760786537e-9,
    1.758547034100492672e-10,
    8.1876534130039399248e-10,
)

# (a+4)·e^(a²/2)·Φ(-a) = Q(v), v = 1/(a+4) in [0, 1/4]: max weighted error 1.4929e-9 (2^-29.32)
_PHICX_32_C0 = 3.9894228099699829505e-1
_PHICX_32 = (  # R = (Q - Q(0))/v, ascending powers of v
    1.5957682847525281197,
    5.9843267622652001178,
    2.0727813204314694173e1,
    6.5812702445887653093e1,
    1.5617528346110412027e2,
    7.336031984690234909e2,
    -3.3118062549036686878e3,
    2.5576406678466035261e4,
    -1.2050984520809545836e5,
    2.4010103654419948041e5,
    -1.7562804048582989102e5,
)

# ------------------------------------------------------- Numba implementations
# One template, compiled for each float type: ``F`` is np.float32 or np.float64 and the
# upper-case names are constants of that type (Numba freezes them). Names starting with
# ``_p_`` are the polynomials (Horner, contracted to FMAs).

_TEMPLATE = '''
def _clamp(x, lo, hi):
    # x limited to [lo, hi]; NaN becomes lo (callers restore NaN with a final select)
    y = x if x > lo else lo
    return y if y < hi else hi


def _reduce(x):
    # (r, k) with x = k*ln2 + r, |r| <= ln2/2, k integral; x finite, |x| < 2^20
    k = (x * LOG2E + SHIFTER) - SHIFTER
    r = fma(-k, LN2_HI, x)
    return fma(-k, LN2_LO, r), k


def _expm1_red(x):
    # (e^r - 1, k), e^r - 1 accurate relative to itself (expm1)
    r, k = _reduce(x)
    return fma(r * r, _p_expm1(r), r), k


def _exp_m1(r):
    # e^r - 1 for |r| <= ln2/2, accurate relative to e^r only (one degree less than expm1)
    return fma(r * r, _p_exp(r), r)


def _exp_red(x):
    # (e^r - 1, k) for e^x = (1 + (e^r - 1))·2^k
    r, k = _reduce(x)
    return _exp_m1(r), k


def _q_tail(ax):
    # 2t/(1+t), t = e^(-2ax), for ax >= 0 (NaN for NaN)
    v = F(-2) * ax
    em1, k = _exp_red(TANH_LO if v < TANH_LO else v)
    t = _scale2(em1 + F(1), k)
    return F(2) * t / (F(1) + t)


def exp_impl(x):
    _inline_me()
    em1, k = _exp_red(_clamp(x, EXP_LO, EXP_HI))
    y = _ldexp(em1 + F(1), k)
    return y if x == x else x


def exp_neg_impl(x):
    _inline_me()
    em1, k = _exp_red(EXP_LO if x < EXP_LO else x)  # NaN passes, and gives NaN
    return _ldexp_neg(em1 + F(1), k)


def exp_kept_impl(x):
    _inline_me()
    # e^x, times 2^KEEP_K below KEEP_X (one scaling step: 2^k normal from KEEP_LO up to
    # where e^x overflows)
    em1, k = _exp_red(KEEP_LO if x < KEEP_LO else x)  # NaN passes, and gives NaN
    return _scale2(em1 + F(1), k + KEEP_K if x < KEEP_X else k)


def unkeep_impl(y, x):
    _inline_me()
    return y * KEEP_INV if x < KEEP_X else y


def _ldexp_pre(y, k):
    # y·2^k for k <= 0 (down to EXP_LO·log2 e): y·S_DEEP is exact, and the one step that
    # may round (to a subnormal) comes last, as in _ldexp_two_steps, at fewer operations
    return _scale2_deep(y * S_DEEP, k)


def _ldexp_two_steps(y, k):
    # y·2^k in two normal-range steps, so that a subnormal result is rounded once
    k1 = (k * F(0.5) + SHIFTER) - SHIFTER
    return _scale2(_scale2(y, k1), k - k1)


def expm1_impl(x):
    _inline_me()
    em1, k = _expm1_red(_clamp(x, EM1_LO, EM1_HI))
    s = _scale2_half(F(1), k)
    y = F(2) * fma(s, em1, s - F(0.5))
    return y if abs(x) >= TINY else x


def _expm1_unhalved(x):
    # expm1_impl where 2^k is normal (EM1_LO <= x <= 64): 2^k·em1 + (2^k - 1) directly
    # (expm1_impl halves both to keep 2^k finite up to EM1_HI: the same bits, times 2)
    em1, k = _expm1_red(x)
    s = _scale2(F(1), k)
    return fma(s, em1, s - F(1))


def expm1_neg_impl(x):
    _inline_me()
    y = _expm1_unhalved(EM1_LO if x < EM1_LO else x)  # (NaN passes)
    return y if x <= -TINY else x


def expm1_pos_impl(x):
    # no special case: below TINY, e^r - 1 = fma(r², P, r) rounds to r = x (and +0 stays)
    _inline_me()
    return _expm1_unhalved(x)


def log1p_impl(x):
    _inline_me()
    u = x + F(1)
    m, k = _log_split(u)
    c = x - (u - F(1))
    c = c if u < TWO_P else F(0)
    kc = k if k < KC_MAX else KC_MAX
    f = (m - F(1)) + _scale2(c, -kc)
    r = fma(k, LN2_HI, fma(k, LN2_LO, _log_tail(f)) + f)
    r = x if (x == INF or not abs(x) >= TINY) else r
    return r if x > F(-1) else (-INF if x == F(-1) else NAN)




def tanh_near0_impl(x):
    # tanh |x| = a - a³G(a²), a = |x| < 1 (float64; float32 takes it below 0.6)
    _inline_me()
    a = abs(x)
    z = a * a
    return fma(-(a * z), _p_xmt(z), a)


def tanh_sq_impl(x):
    _inline_me()
    return tanh_sq_from_impl(x, tanh_near0_impl(x))


def xmtanh_near0_impl(x):
    # a - tanh a = a³·G(a²), a = |x| < 1, a³ with about one rounding
    _inline_me()
    a = abs(x)
    z = a * a
    return fma(a, z, a * fma(a, a, -z)) * _p_xmt(z)


def xmtanh_from_impl(x, s):
    # x - tanh x from s = xmtanh_near0(x) below |x| = 1; (a - 1) + 2t/(1+t), t = e^(-2a)
    # from there (NaN: NaN)
    _inline_me()
    a = abs(x)
    return _copysign(s if a < F(1) else (a - F(1)) + _q_tail(a), x)


def xmtanh_impl(x):
    _inline_me()
    return xmtanh_from_impl(x, xmtanh_near0_impl(x))


def xexp_impl(a, x):
    _inline_me()
    em1, k = _exp_red(_clamp(x, XEXP_LO, XEXP_HI))
    ap = fma(a, em1, a)  # a·e^r rounded once (a·e^r is a itself for a = ±inf)
    ap = ap if abs(a) < INF else a
    y = _ldexp_wide(ap, k)
    return y if x <= XEXP_HI else (a * INF if x > XEXP_HI else x)


def exp_reduced_impl(x):
    _inline_me()
    return _exp_red(_clamp(x, XEXP_LO, XEXP_HI))


def ldexp_impl(y, k):
    _inline_me()
    return _ldexp_wide(y, k)


def ldexp_low_impl(y, k):
    _inline_me()
    return _ldexp_low(y, k if k > K_MIN_LOW else K_MIN_LOW)


def xexp_neg_impl(a, x, dx):
    _inline_me()
    deep = not x > XNEG_LO  # (or NaN) 0 anyway: no dx, which may be large there
    x = XNEG_LO if deep else x
    dx = F(-0.0) if deep else dx  # (-0.0: where dx is -0.0 too, r + dx folds to r)
    r, k = _reduce(x)
    return _ldexp_low(fma(a, _exp_m1(r + dx), a), k)


def _ldexp_down(y, k):
    # y·2^k for k <= 0 down to XNEG_LO·log2(e) - 1, in one step that rounds once: 2^k is
    # normal where k >= K_LOW; below, y·S_DEEP is exact (for |y| >= 2^-62 in float32,
    # 2^-422 in float64) and 2^(k + K_ADD) normal
    deep = k < K_LOW
    return _scale2_deep_if(y * S_DEEP if deep else y, k, deep)


def _ldexp_deep(y, k):
    # y·2^k for k down to XEXP_LO·log2(e) - 1: below K_DEEP, part of 2^k goes on y first
    deep = k < K_DEEP
    y = y * S_DEEP if deep else y
    k = k + K_ADD if deep else k
    return _ldexp_two_steps(y, k)


def erfcx_impl(x):
    _inline_me()
    # F = (1+2x) erfcx(x) = 1 + w; erfcx = 1 + (w - 2x)/(1 + 2x) near 1 (x < 1/2, no
    # rounding of F next to 1), else (1 + w)/2 / (x + 1/2) (no overflow of 2x)
    u = F(2) * (x / (x + F(3)))
    w = fma(u, _p_erfcx(u - F(1)), ERFCX_F0M1)
    near = x < F(0.5)
    num = (w - F(2) * x) if near else F(0.5) + F(0.5) * w
    den = (F(1) + F(2) * x) if near else x + F(0.5)
    r = (F(1) if near else F(0)) + num / den
    return r if x != INF else F(0)
'''

_LOG_TAIL = {
    # log1p(f) - f for f in [√½ - 1, √2 - 1]
    "float32": '''
def _log_tail(f):
    return (f * f) * _p_log(f)
''',
    # fdlibm's form: s = f/(2+f), log1p(f) = f - (f²/2 - s(f²/2 + R(s²)))
    "float64": '''
def _log_tail(f):
    s = f / (F(2) + f)
    z = s * s
    hfsq = F(0.5) * f * f
    return s * (hfsq + z * _p_log(z)) - hfsq
''',
}

_TANH = {
    # e/(e + 2), e = expm1(2|x|): one branch-free expression for every x (expm1 keeps the
    # relative accuracy near 0), ~25% cheaper than two branches; |x| >= 9.5 gives ±1 anyway
    "float32": '''
def _tanh_abs(x):
    # tanh |x| = e/(e + 2), e = expm1(2|x|) (NaN for NaN)
    a = abs(x)
    a = F(9.5) if a > F(9.5) else a
    e = expm1_pos_impl(a + a)
    return e / (e + F(2))


def tanh_impl(x):
    _inline_me()
    return _copysign(_tanh_abs(x), x)


def tanh_sq_from_impl(x, s):
    # the square doubles tanh's error: below 0.6, s = a - a³G(a²) (0.6 ULP) instead of e/(e+2)
    _inline_me()
    t = s if abs(x) < F(0.6) else _tanh_abs(x)
    return t * t
''',
    # float64 keeps the more accurate two branches: G(x²) below 1, 1 - 2t/(1+t) above
    "float64": '''
def _tanh_abs_from(x, s):
    # tanh |x| from s = tanh_near0(x) below 1, 1 - 2t/(1+t), t = e^(-2|x|), from there
    ax = abs(x)
    return s if ax < F(1) else F(1) - _q_tail(ax)  # (NaN: NaN)


def tanh_impl(x):
    _inline_me()
    return _copysign(_tanh_abs_from(x, tanh_near0_impl(x)), x)


def tanh_sq_from_impl(x, s):
    _inline_me()
    t = _tanh_abs_from(x, s)
    return t * t
''',
}

# phicx(x) = e^(x²/2)·Φ(-x) for 0 <= x <= 1024. float32: v·Q(v) with v = 1/(x + 4) (one
# division), Q a polynomial of v, whose terms barely cancel (one of t = 1 - 8v, the usual
# (x-K)/(x+K) map, loses 2 ULP to cancellation near t = 1); the roundings of x + 4 and of
# 1/(x + 4) shift the point where Q is evaluated, and that shift goes back in to first
# order (phicx' = x·phicx - 1/√(2π)). float64: ½·erfcx(x/√2).
_PHICX = {
    "float32": '''
def phicx_impl(x):
    _inline_me()
    s = x + F(4)
    v = F(1) / s
    v2, v2lo = sq_split(v)
    R = _p_phicx(v)
    w = fma(v2, R, v2lo * R)  # v²·R: phicx(1/v - 4) = c0·v + w
    # 1/v - 4 = (s - 4) + s·r to first order, r = 1 - v·s the division's residual (exact):
    # the point is off by d = x - (1/v - 4), which goes back in as d·phicx'(x) (phicx' =
    # x·phicx - 1/√(2π), from a first rounding of c0·v + w), and c0·v + w + d·phicx' is
    # rounded once (c0 in two parts: its float32 rounding alone is 0.45 ULP)
    d = fma(-s, fma(-v, s, F(1)), x - (s - F(4)))  # x - (s - 4) is exact
    dh = d * fma(x, fma(v, C0, w), -INV_SQRT2PI)
    return fma(v, C0, fma(v, C0_LO, w + dh))
''',
    "float64": '''
def phicx_impl(x):
    _inline_me()
    return F(0.5) * erfcx_impl(x * SQRT1_2)
''',
}

# log1p on [0, 1] (what softplus and log-sigmoid take the log of: 1 + e^-|x|). float32:
# t + t²·H(t), one minimax polynomial over the whole interval: no reduction, no division,
# no special case (a subnormal t gives t). float64: log1p.
_LOG1P_UNIT = {
    "float32": '''
def log1p_unit_impl(x):
    _inline_me()
    return fma(x * x, _p_log1pu(x), x)
''',
    "float64": '''
def log1p_unit_impl(x):
    _inline_me()
    return log1p_impl(x)
''',
}


def _horner(name, coeffs):
    """Source of ``def name(x)`` evaluating sum coeffs[i]·x^i by Horner's rule."""
    expr = f"F({coeffs[-1]!r})"
    for c in coeffs[-2::-1]:
        expr = f"({expr} * x + F({c!r}))"
    return f"\ndef {name}(x):\n    return {expr}\n"


def _build(F, polys, consts):
    """Compile the template for float type F; returns its namespace."""
    ns = {"F": F, "fma": fma, "sq_split": sq_split, "_scale2": _scale2, "_log_split": _log_split,
          "_scale2_deep": _scale2_deep, "_scale2_half": _scale2_half,
          "_scale2_deep_if": _scale2_deep_if,
          "_copysign": _copysign, "_inline_me": _inline_me}
    ns.update({k: F(v) for k, v in consts.items()})
    src = "".join(_horner(n, c) for n, c in polys.items()) + _LOG_TAIL[F.__name__] + _TEMPLATE
    src += _LOG1P_UNIT[F.__name__] + _TANH[F.__name__] + _PHICX[F.__name__]
    exec(compile(src, f"<fastact._vmath template {F.__name__}>", "exec"), ns)  # noqa: S102
    # The entry points (``*_impl``) are inlined at the Numba IR level. The helpers (every
    # other function) are compiled once per float type and process, as functions of their
    # own that LLVM inlines (``forceinline``): inlined at the IR level too, each was compiled
    # again in every formula, and the formula's IR grew with every copy (float64
    # tanhshrink's took 10 s to compile, float32 silu''s 4 s).
    for obj in list(ns.values()):
        if isinstance(obj, type(_build)) and obj.__globals__ is ns:
            if obj.__name__.endswith("_impl"):
                register_jitable(inline="always", **_JIT)(obj)
            else:
                register_jitable(forceinline=True, **_JIT)(obj)
    # 2^k scaling: vscalef where the CPU has it, else exponent-bit steps (two, or for k <= 0
    # an exact multiply and one step)
    ns["_ldexp"] = _ldexp_scalef if _SCALEF else ns["_ldexp_two_steps"]
    ns["_ldexp_wide"] = _ldexp_scalef if _SCALEF else ns["_ldexp_deep"]
    ns["_ldexp_neg"] = _ldexp_scalef if _SCALEF else ns["_ldexp_pre"]
    ns["_ldexp_low"] = _ldexp_scalef if _SCALEF else ns["_ldexp_down"]
    return ns


_LN2 = 0.69314718055994530942


def _split(v, t):
    """(hi, lo): hi = v rounded to float type t, lo = the rest rounded."""
    hi = t(v)
    return float(hi), float(v - float(hi))


_N32 = _build(
    np.float32,
    {"_p_exp": _EXP_32, "_p_expm1": _EXPM1_32, "_p_log": _LOG1P_32, "_p_xmt": _XMT_32,
     "_p_erfcx": _ERFCX_32, "_p_log1pu": _LOG1P_UNIT_32, "_p_phicx": _PHICX_32},
    {
        "LOG2E": 1.4426950408889634, "SHIFTER": 1.5 * 2**23,
        "LN2_HI": _split(_LN2, np.float32)[0], "LN2_LO": _split(_LN2, np.float32)[1],
        "EXP_LO": -104.0, "EXP_HI": 89.0,          # e^x: 0 below, inf above
        "EM1_LO": -18.0, "EM1_HI": 89.0, "TINY": 2.0**-25,  # expm1, log1p: x below TINY
        "TANH_LO": -80.0,                           # e^(-2|x|), one-step scaling
        "XEXP_LO": -194.0, "XEXP_HI": 176.0,        # a·e^x: 0 below for any finite a
        "K_DEEP": -200.0, "S_DEEP": 2.0**-_K_ADD32, "K_ADD": float(_K_ADD32),
        "XNEG_LO": -131.0, "K_LOW": -60.0,         # a·e^x, x <= 0, |a| < 2^32: 0 below
        "K_MIN_LOW": -190.0,
        "KEEP_X": -64.0, "KEEP_K": 64.0, "KEEP_INV": 2.0**-64, "KEEP_LO": -131.0,  # exp_kept
        "TWO_P": 2.0**24, "KC_MAX": 64.0,           # 1+x exact-error range, 2^-k clamp
        "INF": math.inf, "NAN": math.nan, "ERFCX_F0M1": _ERFCX_32_F0 - 1.0,
        "INV_SQRT2PI": 0.3989422804014327, "C0": _PHICX_32_C0,
        "C0_LO": _PHICX_32_C0 - float(np.float32(_PHICX_32_C0)),
    },
)

_N64 = _build(
    np.float64,
    {"_p_exp": _EXP_64, "_p_expm1": _EXPM1_64, "_p_log": _LOG1P_64, "_p_xmt": _XMT_64,
     "_p_erfcx": _ERFCX_64},
    {
        "LOG2E": 1.4426950408889634, "SHIFTER": 1.5 * 2**52,
        "LN2_HI": _LN2, "LN2_LO": 2.3190468138462996e-17,
        "EXP_LO": -746.0, "EXP_HI": 710.0,
        "EM1_LO": -40.0, "EM1_HI": 710.0, "TINY": 2.0**-54,
        "TANH_LO": -700.0,
        "XEXP_LO": -1456.0, "XEXP_HI": 1416.0,
        "K_DEEP": -1900.0, "S_DEEP": 2.0**-_K_ADD64, "K_ADD": float(_K_ADD64),
        "XNEG_LO": -1124.0, "K_LOW": -500.0, "K_MIN_LOW": -1622.0,
        "KEEP_X": -64.0, "KEEP_K": 64.0, "KEEP_INV": 2.0**-64, "KEEP_LO": -752.0,
        "TWO_P": 2.0**53, "KC_MAX": 512.0,
        "INF": math.inf, "NAN": math.nan, "ERFCX_F0M1": -5.93e-18, "SQRT1_2": 0.7071067811865476,
    },
)


def _pick(name, *args):
    """The template's ``name`` for all-float32 or all-float64 arguments, else None."""
    for t, ns in ((_F32, _N32), (_F64, _N64)):
        if all(a == t for a in args):
            return ns[name]
    return None


def _register(pyfunc, name):
    """Overload the one-argument ``pyfunc`` with the template's ``name``."""
    overload(pyfunc, jit_options=_JIT, inline="always")(lambda x: _pick(name, x))


# --------------------------------------------------------- public functions
# The Python bodies are the reference semantics in float64 (NumPy / math); they also serve
# the CUDA simulator. The Numba implementations are the template above.


def exp(x):
    """e^x."""
    with np.errstate(all="ignore"):
        return type(x)(np.exp(x))


def exp_neg(x):
    """e^x for x <= 0 (or NaN): exp's value, cheaper without AVX-512 (one scaling step)."""
    return exp(x)


def expm1(x):
    """e^x − 1."""
    with np.errstate(all="ignore"):
        return type(x)(np.expm1(x))


def expm1_neg(x):
    """e^x − 1 for x <= 0 (or NaN): expm1's value, a few operations cheaper (any other x
    gives some value, or NaN)."""
    return expm1(x)


def expm1_pos(x):
    """e^x − 1 for 0 <= x <= 64 (or NaN): expm1's value, without expm1's clamps and special
    cases (so -0 gives +0)."""
    return expm1(x)


def log1p(x):
    """log(1 + x)."""
    with np.errstate(all="ignore"):
        return type(x)(np.log1p(x))


def log1p_unit(x):
    """log(1 + x) for x in [0, 1] (or NaN)."""
    with np.errstate(all="ignore"):
        return type(x)(np.log1p(x))


def tanh(x):
    """tanh x."""
    return type(x)(np.tanh(x))


def tanh_sq(x):
    """tanh² x, within 3.5 ULP (float32) where tanh alone squared could reach 5."""
    return type(x)(np.tanh(x) ** 2)


def xexp_neg(a, x, dx):
    """a·e^(x + dx) for x <= 0, |dx| <= 2^-20·|x| (the low part of a two-part exponent) and
    |a| < 2^32, which where x < -41 (float32; -346 float64) is 0 or at least 2^-62 (2^-422):
    ``xexp`` without its special cases, and one scaling step (a NaN x gives a finite
    result). Without a low part, pass dx = -0.0: x + (-0.0) is x and compiles to nothing,
    x + 0.0 is an addition (it turns -0 into +0)."""
    if not x > -1e4:  # -inf, NaN: 0, whatever dx is (it may be NaN there)
        return type(a)(a * 0.0)
    return xexp(a, x + dx)


def exp_kept(x):
    """e^x for x <= 88 (float32) or 709 (float64) (or NaN), times 2^64 where x < -64, so that
    it stays normal where e^x alone is subnormal: q·e^x = unkeep(q·exp_kept(x), x), with
    the relative error of q·e^x rounded once in the normal range (twice where the result is
    subnormal). One exp for a formula that needs both e^x (taken as 0 below -64: a caller's
    1 + e^x) and q·e^x (silu', mish'). x is clamped to -131 (float32) or -752 (float64),
    where q·e^x is 0 for |q| < 2^32 (float32) or 2^9 (float64)."""
    lo = -131.0 if type(x) is np.float32 else -752.0
    v = max(float(x), lo) if x == x else float(x)
    if x < -64:  # e^(v/2)·2^64·e^(v/2), each factor normal (as the CUDA twin): e^(v + 64 ln 2)
        h = math.exp(v * 0.5)  # was up to 51 float64 ULP off, from the rounding of v + 64 ln 2
        return type(x)(h * 2.0**64 * h)
    return type(x)(math.exp(v))


def unkeep(y, x):
    """y·2^-64 where x < -64: the product of exp_kept(x) with q back to q·e^x."""
    return type(y)(y * 2.0**-64) if x < -64 else y


def exp_reduced(x):
    """(m, k) with e^x = (1 + m)·2^k, k an integral float and 1 + m in [√½, √2]: one exp
    for e^x and for q·e^x = ldexp(fma(q, m, q), k) exact where e^x alone underflows
    (x finite; the compiled form clamps x to the range of ``xexp``, this reference does
    not)."""
    T = type(x)
    u = float(x)
    k = float(round(u / math.log(2.0)))
    return T(math.expm1(u - k * math.log(2.0))), T(k)


def ldexp(y, k):
    """y·2^k for an integral float k, rounded once."""
    return type(y)(math.ldexp(float(y), int(k)))


def ldexp_low(y, k):
    """y·2^k, rounded once, for an integral float k <= 127 and |y| < 2^32, which where
    k < -60 (float32; -500 float64) is 0 or at least 2^-62 (2^-422): one scaling step
    where ``ldexp`` takes two (k below -190, -1622, is taken as that: the result is 0)."""
    return ldexp(y, k)


def xexp(a, x):
    """a·e^x without underflow of the intermediate e^x."""
    if x != x or a != a:
        return type(a)(math.nan)
    if x > 709.0:
        return type(a)(float(a) * math.inf)
    if x < -700.0:
        h = math.exp(0.5 * float(x))
        return type(a)((float(a) * h) * h)
    return type(a)(float(a) * math.exp(x))


# erfcx(x) = e^(x^2) erfc(x); below _ERFCX_ASYM it is formed from erfc and an exact square,
# above it from the asymptotic series 1/(x√π) Σ (-1)^n (2n-1)!! / (2x²)^n.
_ERFCX_ASYM = 25.0
_INV_SQRTPI = 0.56418958354775628695


def _erfcx64(x):
    if x < _ERFCX_ASYM:
        hi = x * x
        lo = fma(x, x, -hi)
        return math.erfc(x) * math.exp(hi) * (1.0 + lo)
    v = 1.0 / (2.0 * x * x)
    s = 1.0
    term = 1.0
    for n in range(1, 12):
        term = -term * (2 * n - 1) * v
        s += term
    return s * _INV_SQRTPI / x


def erfcx(x):
    """e^(x²)·erfc(x) for x >= 0."""
    if x != x:
        return x
    if x == math.inf:
        return type(x)(0.0)
    return type(x)(_erfcx64(float(x)))


def phicx(x):
    """e^(x²/2)·Φ(-x) = ½·erfcx(x/√2) for x >= 0 (Φ the standard normal CDF)."""
    if x != x:
        return x
    if x == math.inf:
        return type(x)(0.0)
    z = float(x) / math.sqrt(2.0)
    if z < _ERFCX_ASYM:  # the exact square of x/√2 is x²/2: no rounding of z² to fold back
        return type(x)(0.5 * math.erfc(z) * math.exp(0.5 * float(x) * float(x)))
    return type(x)(0.5 * _erfcx64(z))


# x - tanh x = x·K/(1+K) with K the tail of tanh's continued fraction
# tanh x = x/(1 + x²/(3 + x²/(5 + ...))): every term positive, no cancellation.
_XMT_CF = 2.0
_XMT_TERMS = 24


def _xmtanh64(x):
    ax = abs(x)
    if not ax < _XMT_CF:
        return x - math.tanh(x)
    x2 = x * x
    k = 0.0
    for n in range(_XMT_TERMS, 0, -1):
        k = x2 / ((2 * n + 1) + k)
    return x * k / (1.0 + k)


def xmtanh(x):
    """x − tanh x, accurate near 0."""
    return type(x)(_xmtanh64(float(x)))


def tanh_near0(x):
    """tanh |x| for |x| < 1 (float64) or 0.6 (float32): tanh_sq's polynomial branch (other
    x: some value)."""
    return type(x)(np.tanh(abs(x)))


def tanh_sq_from(x, s):
    """tanh² x from s = tanh_near0(x): tanh_sq in two steps, for formulas that take its
    polynomial branch and its exp branch in two passes."""
    return tanh_sq(x)


def xmtanh_near0(x):
    """|x| − tanh |x| for |x| < 1: xmtanh's polynomial branch (other x: some value)."""
    return xmtanh(abs(x))


def xmtanh_from(x, s):
    """x − tanh x from s = xmtanh_near0(x): xmtanh in two steps, as tanh_sq_from."""
    return xmtanh(x)


for _f in (exp, exp_neg, expm1, expm1_neg, expm1_pos, log1p, log1p_unit, tanh, tanh_sq,
           erfcx, phicx, xmtanh, xmtanh_near0, tanh_near0, exp_reduced, exp_kept):
    _register(_f, _f.__name__ + "_impl")
del _f
overload(xexp, jit_options=_JIT, inline="always")(lambda a, x: _pick("xexp_impl", a, x))
def _register2(pyfunc, name):
    """Overload the two-argument ``pyfunc`` (x, s) with the template's ``name``."""
    overload(pyfunc, jit_options=_JIT, inline="always")(lambda x, s: _pick(name, x, s))


for _f in (tanh_sq_from, xmtanh_from):
    _register2(_f, _f.__name__ + "_impl")
overload(ldexp, jit_options=_JIT, inline="always")(lambda y, k: _pick("ldexp_impl", y, k))
overload(unkeep, jit_options=_JIT, inline="always")(lambda y, x: _pick("unkeep_impl", y, x))
overload(ldexp_low, jit_options=_JIT, inline="always")(
    lambda y, k: _pick("ldexp_low_impl", y, k)
)
overload(xexp_neg, jit_options=_JIT, inline="always")(
    lambda a, x, dx: _pick("xexp_neg_impl", a, x, dx)
)


# ------------------------------------------------ tables near the origin (float32)
# Where |x| < NEAR a formula may take a tabulated part instead of its exp-based form: a
# degree-5 to 7 piecewise polynomial (``_piecewise``), which the CPU kernels evaluate a block
# at a time with in-register lookups. float64 has no tables: ``near`` is False there. TANH
# covers every float32 (a top at 9.125, where tanh is 1): ``tabled`` is its test. Without
# AVX-512 (no ``vpermt2ps``) both are False too: a lookup there is one load per element and
# coefficient, which LLVM does not vectorize (AVX2 gathers are slow on AMD Zen), and the
# whole loop ran scalar (float32 tanh on a Zen 3); the exp-based forms vectorize.
NEAR = _piecewise.NEAR
XPHI = _piecewise.Table("xphi", _piecewise.XPHI_ROWS, fma, _AVX512)
PHID = _piecewise.Table("phid", _piecewise.PHID_ROWS, fma, _AVX512)
LOG1PEXP = _piecewise.Table("log1pexp", _piecewise.LOG1PEXP_ROWS, fma, _AVX512)
XMTANH3 = _piecewise.Table("xmtanh3", _piecewise.XMTANH3_ROWS, fma, _AVX512)
SILUQ = _piecewise.Table("siluq", _piecewise.SILUQ_ROWS, fma, _AVX512)
TANH2 = _piecewise.Table("tanh2", _piecewise.TANH2_ROWS, fma, _AVX512)
# (not on AMD Zen 4, where in cache tanh' took 0.58-0.60 ns an element from it against
# 0.41-0.44 from its exp form: the table's 8 lookups cost more than they save there)
SECH2 = _piecewise.Table("sech2", _piecewise.SECH2_ROWS, fma, _AVX512 and not ZEN)
TANH = _piecewise.Table("tanh", _piecewise.TANH_ROWS, fma, _AVX512, top=9.125)
MISHD = _piecewise.Table("mishd", _piecewise.MISHD_ROWS, fma, _AVX512, signed=True)


def near(x):
    """Whether x is a float32 with |x| < NEAR (7.875), where the tables apply (on a CPU with
    AVX-512)."""
    return _AVX512 and isinstance(x, np.float32) and bool(abs(x) < NEAR)


def tabled(x):
    """Whether x is a float32, whose tables exist (on a CPU with AVX-512)."""
    return _AVX512 and isinstance(x, np.float32)


def near_sech2(x):
    """``near(x)`` where the kernels take ``SECH2`` (its ``avx512``), else False."""
    return SECH2.avx512 and near(x)


def xphi_near(a):
    """a·Φ(-a) for 0 <= a < NEAR (Φ the standard normal CDF), from the table ``XPHI``."""
    return type(a)(float(a) * 0.5 * math.erfc(float(a) / math.sqrt(2.0)))


def phid_near(a):
    """Φ(-a) - a·φ(a) for 0 <= a < NEAR (φ the standard normal density), from ``PHID``."""
    u = float(a)
    return type(a)(0.5 * math.erfc(u / math.sqrt(2.0)) - u * math.exp(-0.5 * u * u) / _SQRT2PI)


_SQRT2PI = math.sqrt(2.0 * math.pi)


def log1pexp_near(a):
    """log(1 + e^-a) for 0 <= a < NEAR, from ``LOG1PEXP``."""
    return type(a)(math.log1p(math.exp(-float(a))))


def xmtanh3_near(a):
    """(a - tanh a)/a³ for 0 <= a < NEAR (1/3 at 0), from ``XMTANH3``."""
    u = float(a)
    return type(a)(_xmtanh64(u) / u**3 if u else 1.0 / 3.0)


def siluq_near(a):
    """silu'(-a) = σ(-a)(1 - a·σ(a)) for 0 <= a < NEAR, from ``SILUQ``."""
    u = float(a)
    return type(a)((1.0 - u / (1.0 + math.exp(-u))) / (1.0 + math.exp(u)))


def tanh2_near(a):
    """tanh²(a)/a² for 0 <= a < NEAR (1 at 0), from ``TANH2``."""
    u = float(a)
    return type(a)((math.tanh(u) / u) ** 2 if u else 1.0)


def sech2_near(a):
    """sech²a = 1 - tanh²a for 0 <= a < NEAR, from ``SECH2``."""
    return type(a)(1.0 / math.cosh(float(a)) ** 2)


def tanh_table(a):
    """tanh a for every a >= 0 (float32), from ``TANH``, which covers them all."""
    return type(a)(math.tanh(float(a)))


def mishd_near(x):
    """mish'(x) for |x| < NEAR, from the signed table ``MISHD``."""
    u = float(x)
    p = math.tanh(math.log1p(math.exp(u)))
    return type(x)(p + u / (1.0 + math.exp(-u)) * (1.0 - p * p))


overload(near, jit_options=_JIT, inline="always")(
    lambda x: (
        (lambda x: abs(x) < np.float32(NEAR)) if x == _F32 and _AVX512 else (lambda x: False)
    )
)
overload(near_sech2, jit_options=_JIT, inline="always")(
    lambda x: (lambda x: near(x)) if SECH2.avx512 else (lambda x: False)
)
overload(tabled, jit_options=_JIT, inline="always")(
    lambda x: (lambda x: True) if x == _F32 and _AVX512 else (lambda x: False)
)
overload(xphi_near, jit_options=_JIT, inline="always")(lambda a: XPHI.scalar)
overload(phid_near, jit_options=_JIT, inline="always")(lambda a: PHID.scalar)
overload(log1pexp_near, jit_options=_JIT, inline="always")(lambda a: LOG1PEXP.scalar)
overload(xmtanh3_near, jit_options=_JIT, inline="always")(lambda a: XMTANH3.scalar)
overload(siluq_near, jit_options=_JIT, inline="always")(lambda a: SILUQ.scalar)
overload(tanh2_near, jit_options=_JIT, inline="always")(lambda a: TANH2.scalar)
overload(sech2_near, jit_options=_JIT, inline="always")(lambda a: SECH2.scalar)
overload(tanh_table, jit_options=_JIT, inline="always")(lambda a: TANH.scalar)
overload(mishd_near, jit_options=_JIT, inline="always")(lambda x: MISHD.scalar)
