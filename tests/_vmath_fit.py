"""Minimax (discrete Remez) fits for the polynomial kernels of ``fastact/_vmath.py``.

Not a test: run ``python tests/_vmath_fit.py NAME`` to regenerate the coefficient tables
printed there (mpmath at 60 digits; relative-error weights as stated per kernel).
"""

from __future__ import annotations

import sys

import mpmath as mp
import numpy as np

mp.mp.dps = 60


def remez(f, w, powers, a, b, grid=3000, iters=40, xmap=None):
    """Coefficients c minimising max |w(x)(sum c_i x^powers_i - f(x))| on [a, b].

    f, w: mpmath functions of the fit variable x. Returns (coeffs, max weighted error).
    """
    n = len(powers)
    # Chebyshev-distributed grid
    xs = [
        mp.mpf(a) + (mp.mpf(b) - a) * (1 - mp.cos(mp.pi * k / (grid - 1))) / 2
        for k in range(grid)
    ]
    fs = [f(x) for x in xs]
    ws = [w(x) for x in xs]
    basis = [[x**p for p in powers] for x in xs]
    idx = [int(round((grid - 1) * (1 - mp.cos(mp.pi * j / n)) / 2)) for j in range(n + 1)]
    best = None
    for _ in range(iters):
        A = mp.matrix(n + 1, n + 1)
        rhs = mp.matrix(n + 1, 1)
        for r, i in enumerate(idx):
            for c in range(n):
                A[r, c] = basis[i][c]
            A[r, n] = (-1) ** r / ws[i]
            rhs[r] = fs[i]
        sol = mp.lu_solve(A, rhs)
        coef = [sol[c] for c in range(n)]
        err = [
            ws[i] * (mp.fsum(cc * bb for cc, bb in zip(coef, basis[i])) - fs[i])
            for i in range(grid)
        ]
        emax = max(abs(e) for e in err)
        if best is None or emax < best[1]:
            best = (coef, emax)
        # extrema of alternating segments
        ext = []
        start = 0
        for i in range(1, grid + 1):
            if i == grid or mp.sign(err[i]) != mp.sign(err[start]):
                seg = range(start, i)
                ext.append(max(seg, key=lambda j: abs(err[j])))
                start = i
        while len(ext) > n + 1:
            if abs(err[ext[0]]) < abs(err[ext[-1]]):
                ext.pop(0)
            else:
                ext.pop()
        if len(ext) < n + 1:
            break
        if ext == idx:
            break
        idx = ext
    return best


def show(name, coef, emax, powers):
    print(f"# {name}: max weighted error {mp.nstr(emax, 5)} (2^{mp.nstr(mp.log(emax, 2), 4)})")
    for p, c in zip(powers, coef):
        print(f"    {mp.nstr(c, 20, min_fixed=-1, max_fixed=1)},  # x^{p}")


def fit(name, deg):
    L = {}
    if name == "exp":  # e^r = 1 + r + r^2 P(r), |r| <= ln2/2; weight: relative to e^r
        h = mp.log(2) / 2
        powers = list(range(2, deg + 1))
        f = lambda r: mp.expm1(r) - r  # noqa: E731
        w = lambda r: 1 / mp.exp(r)  # noqa: E731
        L = dict(a=-h, b=h)
    elif name == "expm1":  # same form, weight relative to expm1(r)
        h = mp.log(2) / 2
        powers = list(range(2, deg + 1))
        f = lambda r: mp.expm1(r) - r  # noqa: E731
        w = lambda r: 1 / abs(mp.expm1(r)) if r != 0 else mp.mpf(10) ** 30  # noqa: E731
        L = dict(a=-h, b=h)
    elif name == "log1p32":  # log1p(f) = f + f^2 Q(f), f in [sqrt(1/2)-1, sqrt(2)-1]
        powers = list(range(2, deg + 1))
        f = lambda u: mp.log1p(u) - u  # noqa: E731
        w = lambda u: 1 / abs(mp.log1p(u)) if u != 0 else mp.mpf(10) ** 30  # noqa: E731
        L = dict(a=mp.sqrt(0.5) - 1, b=mp.sqrt(2) - 1)
    elif name == "log1p64":  # R(z) = 2 sum z^k/(2k+1), z = s^2, s = f/(2+f); absolute
        s_max = (mp.sqrt(2) - 1) / (mp.sqrt(2) + 1)
        powers = list(range(1, deg + 1))
        f = lambda z: 2 * (mp.atanh(mp.sqrt(z)) / mp.sqrt(z) - 1) if z else mp.mpf(0)  # noqa: E731
        w = lambda z: mp.mpf(1)  # noqa: E731
        L = dict(a=0, b=s_max**2)
    elif name == "xmtanh":  # (x - tanh x)/x^3 = G(z), z = x^2 in [0, 1]; relative
        powers = list(range(0, deg + 1))
        f = lambda z: (mp.sqrt(z) - mp.tanh(mp.sqrt(z))) / mp.sqrt(z) ** 3 if z else mp.mpf(1) / 3  # noqa: E731
        w = lambda z: 1 / f(z)  # noqa: E731
        L = dict(a=0, b=1)
    elif name.startswith("erfcxu"):  # (1+2x) erfcx(x) = F(u), u = 2x/(x+K) in [0, 2]; relative
        K = mp.mpf(name[6:] or 3)
        powers = list(range(0, deg + 1))

        def f(u):
            if u == 2:
                return 2 / mp.sqrt(mp.pi)
            x = K * u / (2 - u)
            return (1 + 2 * x) * mp.exp(x * x) * mp.erfc(x)

        w = lambda u: 1 / f(u)  # noqa: E731
        L = dict(a=0, b=2)
    elif name.startswith("erfcx"):  # (1+2x) erfcx(x) = F(t), t = (x-K)/(x+K); relative
        K = mp.mpf(name[5:] or 4)
        powers = list(range(0, deg + 1))

        def f(t):
            if t == 1:
                return 2 / mp.sqrt(mp.pi)
            x = K * (1 + t) / (1 - t)
            return (1 + 2 * x) * mp.exp(x * x) * mp.erfc(x)

        w = lambda t: 1 / f(t)  # noqa: E731
        L = dict(a=-1, b=1)
    elif name == "log1p_unit":  # log1p(t) = t + t^2 H(t), t in [0, 1]; relative
        powers = list(range(2, deg + 1))
        f = lambda t: mp.log1p(t) - t  # noqa: E731
        w = lambda t: 1 / mp.log1p(t) if t else mp.mpf(10) ** 30  # noqa: E731
        L = dict(a=0, b=1)
    elif name == "phicx":  # (a+4)·e^(a²/2)·Φ(-a) = Q(v), v = 1/(a+4) in [0, 1/4]; relative
        powers = list(range(0, deg + 1))

        def f(v):
            if v == 0:
                return 1 / mp.sqrt(2 * mp.pi)
            a = 1 / v - 4
            if a > 1e4:  # asymptotic series, far below float64 precision there
                r = 1 / (a * a)
                return (a + 4) / (a * mp.sqrt(2 * mp.pi)) * (1 - r + 3 * r * r)
            return (a + 4) * mp.exp(a * a / 2) * mp.erfc(a / mp.sqrt(2)) / 2

        w = lambda v: 1 / f(v)  # noqa: E731
        L = dict(a=0, b=mp.mpf(1) / 4)
    else:
        raise SystemExit(f"unknown kernel {name}")
    coef, emax = remez(f, w, powers, **L)
    show(f"{name} degree {deg}", coef, emax, powers)
    return coef, emax


def deflate(coef, a):
    """(P(a), S) with P(t) = P(a) + (t - a)·S(t) (synthetic division, exact in mpmath)."""
    s = []
    acc = mp.mpf(0)
    for c in reversed(coef):
        acc = acc * a + c
        s.append(acc)
    value = s.pop()
    return value, s[::-1]


# Tables of ``fastact._piecewise``: f(c_j + t) on piece j, a in [u⁻¹(j - ½), u⁻¹(j + ½)]
# (piece 0 from 0, with f(0) = 0 kept exact), widened by 2^-20 for the rounding of u.
PIECEWISE = {
    "xphi": lambda a: a * mp.ncdf(-a),  # a·Φ(-a): gelu's P; relative
    "phid": lambda a: mp.ncdf(-a) - a * mp.npdf(a),  # Φ(-a) - aφ(a): gelu''s U; relative
    "log1pexp": lambda a: mp.log1p(mp.exp(-a)),  # log(1 + e^-a): softplus; relative
    # (a - tanh a)/a³: tanhshrink's G (1/3 at 0); relative
    "xmtanh3": lambda a: (a - mp.tanh(a)) / a**3 if a else mp.mpf(1) / 3,
    # silu'(-a) = σ(-a)(1 - aσ(a)): silu''s Q (zero at a = 1.2785); relative
    "siluq": lambda a: (1 - a / (1 + mp.exp(-a))) / (1 + mp.exp(a)),
    # tanh²(a)/a²: tanhshrink''s (1 at 0); relative
    "tanh2": lambda a: (mp.tanh(a) / a) ** 2 if a else mp.mpf(1),
    "sech2": lambda a: 1 / mp.cosh(a) ** 2,  # sech²a = 1 - tanh²a: tanh's; relative
    "tanh": mp.tanh,  # tanh a: tanh's (0 at 0); relative; its last piece runs to TOPS
}
# Tables that cover every a >= 0: the last piece runs to this top (``_piecewise.Table``).
TOPS = {"tanh": 9.125}


def _mish_p(x):
    """tanh(softplus x): mish(x)/x."""
    return mp.tanh(mp.log1p(mp.exp(x)))


def _mish_d(x):
    """mish'(x) = tanh(sp) + x·σ(x)·(1 - tanh²(sp)), sp = softplus x (zero at -1.1924)."""
    p = _mish_p(x)
    return p + x / (1 + mp.exp(-x)) * (1 - p * p)


# Signed tables (``_piecewise.Table(signed=True)``): pieces 0-15 hold f(a), pieces 16-31
# hold f(-a); relative error.
SIGNED = {"mishd": _mish_d}


def _horner32(coef, t):
    """The float32 Horner sum of ``_piecewise`` (each step one FMA, rounded once)."""
    p = np.float32(float(coef[-1]))
    for cf in reversed(coef[:-1]):
        exact = mp.mpf(float(p)) * mp.mpf(float(t)) + mp.mpf(float(np.float32(float(cf))))
        p = np.float32(float(exact))
    return p


def _land_on(coef, c, top, f):
    """The float32 constant term nearest the fitted one with which the last piece gives
    f(top) correctly rounded at top, where every a >= top is evaluated."""
    want = np.float32(float(f(mp.mpf(top))))
    t = np.float32(np.float32(top) - np.float32(float(c)))
    c0 = np.float32(float(coef[0]))
    for k in sorted(range(-8, 9), key=abs):
        cand = c0
        for _ in range(abs(k)):
            cand = np.nextafter(cand, np.float32(np.sign(k) * np.inf))
        if _horner32([mp.mpf(float(cand))] + list(coef[1:]), t) == want:
            return mp.mpf(float(cand))
    raise ValueError("no constant term within 8 ULP lands on f(top)")


def fit_piecewise(name, deg):
    """Per-piece minimax tables (relative error), printed as rows of ascending powers."""
    from fastact import _piecewise as pw

    if name in SIGNED:  # f(a) on pieces 0-15 (of width 1/2), f(-a) on 16-31
        fs = (SIGNED[name], lambda a: SIGNED[name](-a))
    else:
        fs = (PIECEWISE[name],)
    signed = name in SIGNED
    pieces = pw.HALF if signed else pw.PIECES
    rows = [[] for _ in range(deg + 1)]
    worst = 0
    for f, j in ((f, j) for f in fs for j in range(pieces)):
        c, lo, hi = (mp.mpf(v) for v in pw.piece_bounds(j, signed))
        lo, hi = lo * (1 - mp.mpf(2) ** -20), hi * (1 + mp.mpf(2) ** -20)
        if j == pw.PIECES - 1 and name in TOPS:
            hi = mp.mpf(TOPS[name])
        zero = f(c) == 0
        powers = list(range(1 if zero else 0, deg + 1))
        g = lambda t, c=c, f=f: f(c + t)  # noqa: E731
        w = lambda t, c=c, f=f: 1 / abs(f(c + t)) if f(c + t) else mp.mpf(10) ** 30  # noqa: E731
        coef, emax = remez(g, w, powers, lo - c, hi - c, grid=400, iters=20)
        coef = [mp.mpf(0)] * (deg + 1 - len(coef)) + list(coef)
        if j == pw.PIECES - 1 and name in TOPS:
            coef[0] = _land_on(coef, c, TOPS[name], f)
        for r, cf in zip(rows, coef):
            r.append(cf)
        worst = max(worst, emax)
    print(f"# {name}: degree {deg}, max relative error 2^{mp.nstr(mp.log(worst, 2), 4)}")
    for p, r in enumerate(rows):
        print(f"    (  # t^{p}")
        for k in range(0, len(r), 4):
            # float32 shortest round-trip forms: the package rounds to float32 anyway
            print("        " + " ".join(f"{str(np.float32(float(v)))}," for v in r[k : k + 4]))
        print("    ),")


if __name__ == "__main__":
    if sys.argv[1] in PIECEWISE or sys.argv[1] in SIGNED:
        fit_piecewise(sys.argv[1], int(sys.argv[2]))
        raise SystemExit
    coef, emax = fit(sys.argv[1], int(sys.argv[2]))
    if sys.argv[1].startswith("erfcx"):  # the form used: F = P(-1) + (1 + t)·S(t)
        p0, s = deflate(coef, -1)
        show(f"P(-1) = {mp.nstr(p0, 20)}; S", s, emax, range(len(s)))
