"""Piecewise polynomials near the origin, looked up in registers (float32).

A ``Table`` approximates f(a) for 0 <= a < NEAR (7.875) by 32 polynomials: f(a) ≈ p_j(t),
t = a - c_j, on the piece j = round(u(a)), u(a) = 2a + a²/4. The pieces narrow as a grows
(1/2 wide at 0, 1/6 at 8), as fast as the Gaussian tails that the tables hold steepen, so
one degree serves all: each p_j varies by at most e^(±0.7) over its piece, which keeps the
float32 Horner sum within about 2 ULP. c_j = u⁻¹(j) in float32 (c_0 = 0), so t is exact
(Sterbenz: c_j/2 <= a <= 2c_j on every piece). Row i of a table holds the coefficient of
t^i of all 32 pieces.

Two evaluations, which give the same bits for every a below NEAR:

- ``Table.scalar(a)``, for every target: the coefficients are loads from the table;
- ``block_eval(table, n)``, n elements at a time for the CPU kernels. On AVX-512 each row is
  a pair of zmm registers and one ``vpermt2ps`` fetches 16 lanes' entries at once, so a
  degree-7 table costs 9 lookups (c_j and 8 coefficients) and 10 FMAs per 16 elements: a
  fraction of an exp, and no range check (the caller tests that a block is all below
  NEAR). Elsewhere it is a loop of ``scalar``; for float64 (no tables) it does nothing.

j is the low bits of y = a·(2 + a/4) + 1.5·2^23 (two FMAs; the last rounds to an integer).
The fits (``python tests/_vmath_fit.py xphi 7``) are minimax in relative error on each piece.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload, register_jitable

PIECES = 32
NEAR = 7.875  # u(NEAR) = 31.25: every a below it rounds to a piece <= 31
_U1, _U2 = 2.0, 0.25  # u(a) = _U1·a + _U2·a²
_ROUND = 1.5 * 2**23  # u + _ROUND: u rounded to an integer, in the low mantissa bits
_LANES = 16  # float32 lanes of a zmm register
_JIT = {"error_model": "numpy", "fastmath": {"contract"}}


def u_inverse(u: float) -> float:
    """The a >= 0 with u(a) = u."""
    return (math.sqrt(_U1 * _U1 + 4 * _U2 * u) - _U1) / (2 * _U2)


# the centres c_j, in float32
CENTERS = tuple(float(np.float32(u_inverse(j))) for j in range(PIECES))


# a·Φ(-a) (Φ the standard normal CDF): gelu's tail part. Within 2^-27.8 (relative) of it.
XPHI_ROWS = (
    (  # t^0
        0.0, 0.15033512, 0.1657105, 0.12690915,
        0.08081219, 0.045500264, 0.023356838, 0.011134984,
        0.004991518, 0.0021229684, 0.00086254836, 0.00033657593,
        0.00012668497, 4.615968e-05, 1.6330405e-05, 5.623882e-06,
        1.8894267e-06, 6.204487e-07, 1.994741e-07, 6.287969e-08,
        1.9459955e-08, 5.9195258e-09, 1.7717391e-09, 5.22263e-10,
        1.517489e-10, 4.3495794e-11, 1.2307202e-11, 3.4398933e-12,
        9.503029e-13, 2.5962606e-13, 7.01818e-14, 1.8779972e-14,
    ),
    (  # t^1
        0.5, 0.14992557, -0.055093065, -0.1255086,
        -0.1187542, -0.0852318, -0.052165292, -0.028558448,
        -0.014350333, -0.006726751, -0.002974564, -0.0012510796,
        -0.00050364964, -0.0001950404, -7.295155e-05, -2.6443586e-05,
        -9.315556e-06, -3.1970444e-06, -1.071132e-06, -3.5097668e-07,
        -1.1265289e-07, -3.546871e-08, -1.0968062e-08, -3.3348824e-09,
        -9.980055e-10, -2.94227e-10, -8.552325e-11, -2.4528152e-11,
        -6.9457803e-12, -1.9432338e-12, -5.374378e-13, -1.4701527e-13,
    ),
    (  # t^2
        -0.3989423, -0.31709114, -0.15871061, -0.028763967,
        0.0376728, 0.053990968, 0.045545507, 0.030717075,
        0.018023232, 0.009560896, 0.0046869107, 0.0021535729,
        0.00093681156, 0.00038867825, 0.00015469293, 5.9331946e-05,
        2.2012635e-05, 7.924614e-06, 2.7755739e-06, 9.479327e-07,
        3.162998e-07, 1.0329003e-07, 3.306039e-08, 1.0385443e-08,
        3.2057081e-09, 9.73348e-10, 2.9098524e-10, 8.5725614e-11,
        2.4907408e-11, 7.1422738e-12, 2.0226507e-12, 5.6603696e-13,
    ),
    (  # t^3
        1.9252838e-07, 0.10606641, 0.1273675, 0.086974025,
        0.03503678, 3.593247e-09, -0.014553294, -0.016032888,
        -0.012240241, -0.007771045, -0.004367933, -0.0022420944,
        -0.0010706418, -0.00048149956, -0.0002057496, -8.409347e-05,
        -3.304624e-05, -1.2538217e-05, -4.608895e-06, -1.6460981e-06,
        -5.7262747e-07, -1.9442807e-07, -6.455181e-08, -2.0990079e-08,
        -6.694034e-09, -2.0964075e-09, -6.4544853e-10, -1.9556198e-10,
        -5.836312e-11, -1.7170446e-11, -4.983571e-12, -1.427955e-12,
    ),
    (  # t^4
        0.06648567, 0.037013777, -0.01113991, -0.035328552,
        -0.032356936, -0.017997323, -0.0051594144, 0.0018377106,
        0.0039977785, 0.0036564854, 0.00255493, 0.0015314893,
        0.00082528935, 0.0004099264, 0.00019061404, 8.386207e-05,
        3.518028e-05, 1.4155497e-05, 5.4887296e-06, 2.0586633e-06,
        7.49249e-07, 2.6530262e-07, 9.1603106e-08, 3.090129e-08,
        1.02018e-08, 3.3011065e-09, 1.0483248e-09, 3.271133e-10,
        1.00397794e-10, 3.0337944e-11, 9.033553e-12, 2.6526622e-12,
    ),
    (  # t^5
        5.495014e-05, -0.021896912, -0.019480728, -0.0045402898,
        0.0065065976, 0.008998256, 0.0063459934, 0.0027851583,
        0.0003744279, -0.00067085616, -0.000852586, -0.00067659153,
        -0.00043717577, -0.0002483969, -0.00012856857, -6.185248e-05,
        -2.801917e-05, -1.2061173e-05, -4.9670653e-06, -1.9672614e-06,
        -7.524733e-07, -2.789158e-07, -1.0047242e-07, -3.525826e-08,
        -1.2078539e-08, -4.046589e-09, -1.3279003e-09, -4.2741305e-10,
        -1.3510479e-10, -4.19868e-11, -1.2841182e-11, -3.8684503e-12,
    ),
    (  # t^6
        -0.0103045255, -0.0036518876, 0.0048498735, 0.0064959214,
        0.0031051098, -0.0004306748, -0.0019111147, -0.0017288461,
        -0.00096547516, -0.00031255747, 3.850805e-05, 0.00015320086,
        0.00014802122, 0.00010519372, 6.354326e-05, 3.441139e-05,
        1.7164857e-05, 8.016105e-06, 3.5433225e-06, 1.4941269e-06,
        6.045956e-07, 2.358635e-07, 8.904344e-08, 3.2630968e-08,
        1.16378e-08, 4.0484185e-09, 1.3762547e-09, 4.5796592e-10,
        1.4938993e-10, 4.78326e-11, 1.5050189e-11, 4.6582677e-12,
    ),
    (  # t^7
        0.000994315, 0.0031275833, 0.0019522762, -0.0006554033,
        -0.0016679092, -0.0011086476, -0.00020759806, 0.00030342938,
        0.00038320248, 0.0002578851, 0.0001125386, 1.9776187e-05,
        -1.950369e-05, -2.6964837e-05, -2.1642403e-05, -1.3994297e-05,
        -7.94033e-06, -4.1044154e-06, -1.9733736e-06, -8.9419746e-07,
        -3.8537556e-07, -1.590285e-07, -6.316048e-08, -2.4242341e-08,
        -9.022211e-09, -3.2648702e-09, -1.1514733e-09, -3.9659825e-10,
        -1.3363297e-10, -4.411697e-11, -1.4289355e-11, -4.5462635e-12,
    ),
)

# Φ(-a) - a·φ(a) (φ the standard normal density): gelu''s. Within 2^-28.1 (relative) of it
# (``python tests/_vmath_fit.py phid 7``).
PHID_ROWS = (
    (  # t^0
        0.5, 0.14992556, -0.055093065, -0.1255086,
        -0.1187542, -0.0852318, -0.052165292, -0.028558448,
        -0.014350333, -0.006726751, -0.002974564, -0.0012510796,
        -0.00050364964, -0.0001950404, -7.295155e-05, -2.6443586e-05,
        -9.315556e-06, -3.1970444e-06, -1.071132e-06, -3.5097668e-07,
        -1.1265289e-07, -3.546871e-08, -1.0968062e-08, -3.3348824e-09,
        -9.980055e-10, -2.94227e-10, -8.552325e-11, -2.452815e-11,
        -6.94578e-12, -1.9432338e-12, -5.374378e-13, -1.4701527e-13,
    ),
    (  # t^1
        -0.7978846, -0.6341823, -0.3174212, -0.05752792,
        0.0753456, 0.107981935, 0.091091014, 0.06143415,
        0.036046464, 0.019121792, 0.009373821, 0.0043071457,
        0.0018736231, 0.0007773565, 0.00030938585, 0.000118663884,
        4.4025266e-05, 1.5849228e-05, 5.5511473e-06, 1.8958651e-06,
        6.325995e-07, 2.0658001e-07, 6.612077e-08, 2.077088e-08,
        6.4114145e-09, 1.9466952e-09, 5.8197025e-10, 1.7145116e-10,
        4.9814795e-11, 1.42845406e-11, 4.0452997e-12, 1.1320733e-12,
    ),
    (  # t^2
        2.2404889e-08, 0.31819934, 0.38210243, 0.26092207,
        0.10511034, 2.0240052e-09, -0.04365989, -0.048098665,
        -0.036720723, -0.023313133, -0.013103799, -0.0067262826,
        -0.0032119253, -0.0014444987, -0.0006172489, -0.00025228047,
        -9.913875e-05, -3.7614664e-05, -1.3826692e-05, -4.938298e-06,
        -1.717884e-06, -5.832848e-07, -1.9365568e-07, -6.297033e-08,
        -2.0082135e-08, -6.289234e-09, -1.9363495e-09, -5.866873e-10,
        -1.7508979e-10, -5.151148e-11, -1.4950758e-11, -4.2838784e-12,
    ),
    (  # t^3
        0.26596084, 0.14805733, -0.044566385, -0.14131854,
        -0.1294278, -0.071987964, -0.020636726, 0.007351124,
        0.015991054, 0.014625813, 0.01021963, 0.006125916,
        0.0033011457, 0.0016397063, 0.00076245994, 0.00033545154,
        0.00014072319, 5.6623114e-05, 2.1955468e-05, 8.234902e-06,
        2.997102e-06, 1.0612534e-06, 3.6642913e-07, 1.2361143e-07,
        4.0809468e-08, 1.32052245e-08, 4.1935726e-09, 1.3085447e-09,
        4.016211e-10, 1.2136137e-10, 3.613723e-11, 1.061158e-11,
    ),
    (  # t^4
        1.0385698e-05, -0.109491944, -0.09739777, -0.022700395,
        0.03253267, 0.04499211, 0.03173093, 0.013926194,
        0.0018720527, -0.0033545324, -0.004263135, -0.0033830642,
        -0.0021859123, -0.0012419827, -0.0006428306, -0.00030925084,
        -0.00014008803, -6.030136e-05, -2.4832998e-05, -9.8351975e-06,
        -3.7618709e-06, -1.394369e-06, -5.0227703e-07, -1.7625818e-07,
        -6.038025e-08, -2.022841e-08, -6.637896e-09, -2.136511e-09,
        -6.753372e-10, -2.0987241e-10, -6.418602e-11, -1.9335943e-11,
    ),
    (  # t^5
        -0.05992471, -0.022028284, 0.02948893, 0.039265506,
        0.018636396, -0.0026988792, -0.011556536, -0.010403003,
        -0.0057861176, -0.0018591849, 0.00024331466, 0.00092525815,
        0.0008899428, 0.0006310384, 0.0003805983, 0.00020586206,
        0.000102583326, 4.786527e-05, 2.114126e-05, 8.908485e-06,
        3.6025028e-06, 1.4045762e-06, 5.299692e-07, 1.9411503e-07,
        6.9198215e-08, 2.406118e-08, 8.176153e-09, 2.7196454e-09,
        8.868261e-10, 2.8384906e-10, 8.928107e-11, 2.7625032e-11,
    ),
    (  # t^6
        0.0003532126, 0.02202011, 0.013523848, -0.004629632,
        -0.011667945, -0.007777979, -0.0014792711, 0.002111362,
        0.0026854412, 0.0018149253, 0.0007964316, 0.00014330196,
        -0.00013488128, -0.00018884738, -0.00015218066, -9.864049e-05,
        -5.607024e-05, -2.9026756e-05, -1.397412e-05, -6.3395278e-06,
        -2.735078e-06, -1.1297594e-06, -4.4910897e-07, -1.725244e-07,
        -6.425924e-08, -2.3271102e-08, -8.213242e-09, -2.830776e-09,
        -9.544392e-10, -3.1528766e-10, -1.021806e-10, -3.252779e-11,
    ),
    (  # t^7
        0.008838169, 0.0016664031, -0.00625904, -0.0053964304,
        -0.00012558332, 0.0027552783, 0.0023980956, 0.0008801245,
        -0.00021640182, -0.00056306145, -0.00046094833, -0.00024406223,
        -7.821536e-05, 5.686579e-06, 3.208961e-05, 3.1096242e-05,
        2.1933314e-05, 1.3143192e-05, 7.0694427e-06, 3.5078913e-06,
        1.6320923e-06, 7.19713e-07, 3.0312836e-07, 1.2264603e-07,
        4.7884857e-08, 1.810655e-08, 6.6506307e-09, 2.378845e-09,
        8.3036994e-10, 2.8338543e-10, 9.4706194e-11, 3.1037426e-11,
    ),
)


class Table:
    """A piecewise polynomial: ``rows[i][j]`` is the coefficient of t^i on piece j."""

    def __init__(self, name: str, rows, fma, avx512: bool):
        self.name = name
        self.rows = np.array(rows, dtype=np.float32)
        if self.rows.ndim != 2 or self.rows.shape[1] != PIECES:
            raise ValueError(f"{name}: rows of {PIECES} coefficients expected")
        self.avx512 = avx512
        self.scalar = _scalar(self.rows, fma)


_CENTERS = np.array(CENTERS, dtype=np.float32)


def _scalar(rows, fma):
    """p_j(a - c_j) for a in [0, NEAR) (any a >= 0 or NaN gives a finite or NaN value and
    reads inside the table); float64 evaluates the float32 table in float64 (unused: no
    formula asks for it)."""
    deg = rows.shape[0] - 1
    top = np.float32(PIECES - 1)
    centers = _CENTERS

    def scalar(a):
        T = type(a)
        y = fma(a, fma(a, T(_U2), T(_U1)), T(_ROUND))
        k = y - T(_ROUND)
        j = np.int32(k if k < top else top)  # NaN and a >= NEAR: the last piece
        t = a - T(centers[j])
        p = T(rows[deg, j])
        for i in range(deg - 1, -1, -1):
            p = fma(p, t, T(rows[i, j]))
        return p

    return register_jitable(inline="always", **_JIT)(scalar)


def block_eval(table: Table, n: int):
    """``ev(src, dst)``: dst[i] = table.scalar(|src[i]|) for the n elements of 1-D arrays
    src, dst of n or more (float32; nothing for float64)."""

    def ev(src, dst):
        raise NotImplementedError("compiled only")

    scalar = table.scalar

    def portable(src, dst):
        for i in range(n):
            dst[i] = scalar(abs(src[i]))

    @overload(ev, jit_options=_JIT)
    def _ol(src, dst):
        if src.dtype != types.float32:
            return lambda src, dst: None
        if table.avx512 and n % _LANES == 0:
            vperm = _vperm_block(table.rows, n)
            return lambda src, dst: vperm(src, dst)
        return portable

    return ev


def _vperm_block(rows: np.ndarray, n: int):
    """The AVX-512 form of ``block_eval``: explicit 16-lane vectors, ``vpermt2ps`` per row."""
    f32, i32 = ir.FloatType(), ir.IntType(32)
    vec, ivec = ir.VectorType(f32, _LANES), ir.VectorType(i32, _LANES)
    half = PIECES // 2

    def const(values):
        return ir.Constant(vec, [ir.Constant(f32, float(v)) for v in values])

    def splat(v):
        return const([np.float32(v)] * _LANES)

    @intrinsic
    def vperm(typingctx, src, dst):
        def codegen(context, builder, signature, args):
            s, d = (
                context.make_array(ty)(context, builder, value=v).data
                for ty, v in zip(signature.args, args)
            )

            def llvm(name, nargs, argty=vec):
                fnty = ir.FunctionType(vec, [vec] + [argty] * (nargs - 1))
                return cgutils.get_or_insert_function(builder.module, fnty, name)

            fabs, fma = llvm("llvm.fabs.v16f32", 1), llvm("llvm.fma.v16f32", 3)
            perm = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(vec, [vec, ivec, vec]),
                "llvm.x86.avx512.vpermi2var.ps.512",
            )

            def lookup(row, j):  # vpermt2ps reads the low 5 bits of j
                return builder.call(perm, [const(row[:half]), j, const(row[half:])])

            for q in range(0, n, _LANES):
                ps = builder.bitcast(builder.gep(s, [i32(q)]), vec.as_pointer())
                pd = builder.bitcast(builder.gep(d, [i32(q)]), vec.as_pointer())
                a = builder.call(fabs, [builder.load(ps, align=4)])
                u = builder.call(fma, [a, splat(_U2), splat(_U1)])
                y = builder.call(fma, [a, u, splat(_ROUND)])
                j = builder.bitcast(y, ivec)
                t = builder.fsub(a, lookup(_CENTERS, j))
                p = lookup(rows[-1], j)
                for i in range(len(rows) - 2, -1, -1):
                    p = builder.call(fma, [p, t, lookup(rows[i], j)])
                builder.store(p, pd, align=4)
            return context.get_dummy_value()

        return types.none(src, dst), codegen

    return vperm
