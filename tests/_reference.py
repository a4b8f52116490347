"""High-precision references (mpmath) for every activation, keyed by registry name, plus
the sampling and ULP helpers the accuracy tests share.

References follow PyTorch's conventions at the kinks, exactly as SPEC §1 states them.
"""

from __future__ import annotations

import mpmath as mp
import numpy as np

mp.mp.prec = 200

ONE, ZERO = mp.mpf(1), mp.mpf(0)
_SELU_L = mp.mpf("1.0507009873554804934193349852946")
_SELU_A = mp.mpf("1.6732632423543772848170429916717")


def _sig(x):
    return 1 / (1 + mp.exp(-x))


def _tanhshrink(x):
    if abs(x) < mp.mpf("1e-6"):
        x2 = x * x
        return x * x2 * (mp.mpf(1) / 3 - x2 * (mp.mpf(2) / 15 - x2 * mp.mpf(17) / 315))
    return x - mp.tanh(x)


def _phi_cdf(x):
    if abs(x) > 1e4:  # e^(-x²/2) underflows every float format; mpmath's erfc can overflow
        return ZERO if x < 0 else ONE
    return mp.erfc(-x / mp.sqrt(2)) / 2


def _phi_pdf(x):
    return ZERO if abs(x) > 1e4 else mp.exp(-x * x / 2) / mp.sqrt(2 * mp.pi)


def _softplus(x, b, t):
    return x if b * x > t else mp.log1p(mp.exp(b * x)) / b


def _softplus_d(x, b, t):
    return mp.mpf(1) if b * x > t else _sig(b * x)


def _mish_d(x):
    sp = mp.log1p(mp.exp(x))
    return mp.tanh(sp) + x * mp.sech(sp) ** 2 * _sig(x)


def _gelu_tanh_consts(dtype):
    return (
        mp.mpf(float(dtype(np.sqrt(2 / np.pi)))),
        mp.mpf(float(dtype(0.044715))),
        mp.mpf(float(dtype(3 * 0.044715))),
    )


def _gelu_tanh(x, dtype):
    c1, c2, _ = _gelu_tanh_consts(dtype)
    return x * _sig(2 * c1 * (x + c2 * x**3))


def _gelu_tanh_d(x, dtype):
    c1, c2, c3 = _gelu_tanh_consts(dtype)
    u = c1 * (x + c2 * x**3)
    du = c1 * (1 + c3 * x * x)
    s, sm = _sig(2 * u), _sig(-2 * u)
    return s + 2 * x * s * sm * du



# name -> (f(x, *params), f'(x, *params)); params as mpf, in registry order.
REF = {
    "binary_step": (lambda x: ONE if x >= 0 else ZERO, lambda x: ZERO),
    "sigmoid": (_sig, lambda x: _sig(x) * _sig(-x)),
    "tanh": (mp.tanh, lambda x: mp.sech(x) ** 2),
    "relu": (lambda x: x if x > 0 else ZERO, lambda x: ONE if x > 0 else ZERO),
    "relu6": (
        lambda x: min(max(x, ZERO), mp.mpf(6)),
        lambda x: ONE if 0 < x < 6 else ZERO,
    ),
    "leaky_relu": (lambda x, s: x if x > 0 else s * x, lambda x, s: ONE if x > 0 else s),
    "elu": (
        lambda x, a: x if x > 0 else a * mp.expm1(x),
        lambda x, a: ONE if x > 0 else a * mp.exp(x),
    ),
    "selu": (
        lambda x: _SELU_L * (x if x > 0 else _SELU_A * mp.expm1(x)),
        lambda x: _SELU_L * (ONE if x > 0 else _SELU_A * mp.exp(x)),
    ),
    "celu": (
        lambda x, a: x if x > 0 else a * mp.expm1(x / a),
        lambda x, a: ONE if x > 0 else mp.exp(x / a),
    ),
    "gelu": (lambda x: x * _phi_cdf(x), lambda x: _phi_cdf(x) + x * _phi_pdf(x)),
    "silu": (lambda x: x * _sig(x), lambda x: _sig(x) * (1 + x * _sig(-x))),
    "mish": (lambda x: x * mp.tanh(mp.log1p(mp.exp(x))), _mish_d),
    "softplus": (_softplus, _softplus_d),
    "softsign": (lambda x: x / (1 + abs(x)), lambda x: 1 / (1 + abs(x)) ** 2),
    "hardtanh": (
        lambda x, lo, hi: min(max(x, lo), hi),
        lambda x, lo, hi: ONE if lo < x < hi else ZERO,
    ),
    "hardsigmoid": (
        lambda x: ZERO if x <= -3 else (ONE if x >= 3 else (x + 3) / 6),
        lambda x: ONE / 6 if -3 < x < 3 else ZERO,
    ),
    "hardswish": (
        lambda x: ZERO if x <= -3 else (x if x >= 3 else x * (x + 3) / 6),
        lambda x: ZERO if x <= -3 else (ONE if x >= 3 else (2 * x + 3) / 6),
    ),
    "log_sigmoid": (lambda x: -mp.log1p(mp.exp(-x)), lambda x: _sig(-x)),
    "tanhshrink": (_tanhshrink, lambda x: mp.tanh(x) ** 2),
    "softshrink": (
        lambda x, l: x - l if x > l else (x + l if x < -l else ZERO),
        lambda x, l: ONE if abs(x) > l else ZERO,
    ),
    "hardshrink": (
        lambda x, l: x if abs(x) > l else ZERO,
        lambda x, l: ONE if abs(x) > l else ZERO,
    ),
}

# Non-default parameter sets tested besides the defaults.
PARAM_CASES = {
    "leaky_relu": [{"negative_slope": 0.2}, {"negative_slope": -0.3}],
    "elu": [{"alpha": 0.5}],
    "celu": [{"alpha": 2.5}, {"alpha": 0.3}],
    "softplus": [{"beta": 2.0, "threshold": 10.0}, {"beta": 0.7, "threshold": 15.0}],
    "hardtanh": [{"min_val": -2.0, "max_val": 0.5}],
    "softshrink": [{"lambd": 1.25}],
    "hardshrink": [{"lambd": 1.25}],
    "gelu": [{"approximate": "tanh"}],
}

# Derivatives with an interior zero: SPEC §4 allows 4 eps absolute for |x| in [0.5, 2].
INTERIOR_ZERO = {"gelu", "silu", "mish"}


def variants(acts):
    """(id, activation, params) for the defaults and every PARAM_CASES entry."""
    out = []
    for name, act in acts.items():
        out.append((name, act, dict(act.params)))
        for i, p in enumerate(PARAM_CASES.get(name, [])):
            out.append((f"{name}[{i}]", act, {**act.params, **p}))
    return out


def reference(name: str, params: dict, dtype):
    """(f, f') as functions of an mpf x, with the parameters rounded to ``dtype`` (as the
    kernels see them)."""
    if name == "gelu" and params.get("approximate") == "tanh":
        return (lambda x: _gelu_tanh(x, dtype)), (lambda x: _gelu_tanh_d(x, dtype))
    f, d = REF[name]
    ps = [mp.mpf(float(dtype(v))) for k, v in params.items() if k != "approximate"]
    return (lambda x: f(x, *ps)), (lambda x: d(x, *ps))


def sample(dtype, params: dict, seed: int = 0, n: int = 600) -> np.ndarray:
    """Seeded points over the whole finite range: the core, the tails, subnormals, kinks."""
    rng = np.random.default_rng(seed)
    fi = np.finfo(dtype)
    tail = 110.0 if dtype == np.float32 else 760.0
    parts = [
        rng.uniform(-8, 8, n),
        rng.uniform(-tail, tail, n // 3),
        rng.uniform(-tail, -0.8 * tail, n // 6),  # deep negative tail (subnormal results)
        rng.uniform(-45, -25, n // 6),  # gelu/gelu' tail
        np.sign(rng.uniform(-1, 1, n // 2))
        * np.exp(rng.uniform(np.log(float(fi.tiny)), np.log(float(fi.max)), n // 2)),
        rng.uniform(-1, 1, n // 6) * float(fi.tiny),  # subnormals
        rng.uniform(-2, 2, n // 3),
    ]
    kinks = [0.0, -0.0, 1.0, -1.0, 3.0, -3.0, 6.0, -0.75, -1.28, -1.19, 1e-3, -1e-3]
    kinks += [float(v) for k, v in params.items() if k != "approximate"]
    kinks += [-float(v) for k, v in params.items() if k != "approximate"]
    x = np.concatenate(parts + [np.array(kinks)]).astype(dtype)
    return x[np.isfinite(x)]


def ulp_errors(got: np.ndarray, x: np.ndarray, ref, dtype) -> np.ndarray:
    """|got - ref(x)| in units of the last place of ref(x) in ``dtype`` (subnormal spacing at
    the bottom). A result that must overflow counts 0 when it is the right infinity."""
    fi = np.finfo(dtype)
    p = fi.nmant + 1
    emin = fi.minexp
    errs = np.empty(x.size)
    for i, (xi, gi) in enumerate(zip(x.tolist(), got.tolist())):
        r = ref(mp.mpf(xi))
        rd = dtype(float(r)) if abs(r) < mp.mpf(2) ** 1100 else dtype(np.inf * float(mp.sign(r)))
        if not np.isfinite(rd) or not np.isfinite(gi):
            errs[i] = 0.0 if gi == rd else np.inf
            continue
        if r == 0:
            errs[i] = abs(gi) / float(fi.smallest_subnormal)
            continue
        _, e = mp.frexp(r)
        ulp = mp.ldexp(1, max(int(e) - 1, emin) - (p - 1))
        errs[i] = float(abs(mp.mpf(gi) - r) / ulp)
    return errs
