"""What fastact is measured against, keyed by registry name.

- ``NUMPY[name] = (f, fprime)``: the plain NumPy formula of the activation and of its
  derivative, as a NumPy user writes it (temporaries and all), with the registry's default
  parameters. NumPy has no ``erf``, so NumPy's ``gelu`` is the tanh approximation
  ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` (``NUMPY_PARAMS`` says which fastact
  call computes the same function); the exact gelu peer is SciPy's ``erfc``.
- ``SCIPY[name] = (forward_, fprime)``: where ``scipy.special`` has the function: ``expit``
  (sigmoid, silu), ``log_expit`` (log_sigmoid), ``softplus``, ``erfc`` (gelu). ``forward_``
  writes into its argument (``out=`` of the SciPy ufunc where it has one).
- ``TORCH_FORWARD_``/``TORCH_BACKWARD``: PyTorch's in-place functions and the fused ATen
  backward kernels that autograd runs, built lazily (torch is optional).
- ``MPMATH[name]``: the activation in arbitrary precision, for ``track_`` accuracy in ULP.

A module of data, no benchmarks: asv imports it and finds nothing to run.
"""

from __future__ import annotations

import math

import numpy as np

import fastact

SELU_LAMBDA = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_LAMBDA_S = "1.0507009873554804934193349852946"
_SELU_ALPHA_S = "1.6732632423543772848170429916717"
_K = math.sqrt(2.0 / math.pi)  # gelu's tanh form
_C = 0.044715


def _p(name: str, key: str) -> float:
    return fastact.ACTIVATIONS[name].params[key]


def _like(x, v):
    return np.asarray(v, dtype=x.dtype)


def _sig(x):
    return 1 / (1 + np.exp(-x))


# ---------------------------------------------------------------- NumPy: f and f'
def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(_K * (x + _C * x**3)))


def _gelu_tanh_grad(x):
    t = np.tanh(_K * (x + _C * x**3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _K * (1 + 3 * _C * x * x)


def _mish_grad(x):
    t = np.tanh(np.logaddexp(0, x))
    return t + x * (1 - t * t) * _sig(x)


def _hardswish_grad(x):
    return np.where(x < -3, 0, np.where(x > 3, 1, (2 * x + 3) / 6))


_SLOPE = _p("leaky_relu", "negative_slope")
_ELU_A = _p("elu", "alpha")
_CELU_A = _p("celu", "alpha")
_BETA, _THRESH = _p("softplus", "beta"), _p("softplus", "threshold")
_MIN, _MAX = _p("hardtanh", "min_val"), _p("hardtanh", "max_val")
_SOFT_L = _p("softshrink", "lambd")
_HARD_L = _p("hardshrink", "lambd")

NUMPY = {
    "binary_step": (lambda x: (x >= 0).astype(x.dtype), lambda x: np.zeros_like(x)),
    "sigmoid": (_sig, lambda x: _sig(x) * (1 - _sig(x))),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "relu": (lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(x.dtype)),
    "relu6": (
        lambda x: np.minimum(np.maximum(x, 0), 6),
        lambda x: ((x > 0) & (x < 6)).astype(x.dtype),
    ),
    "leaky_relu": (
        lambda x: np.where(x > 0, x, _SLOPE * x),
        lambda x: np.where(x > 0, 1, _like(x, _SLOPE)),
    ),
    "elu": (
        lambda x: np.where(x > 0, x, _ELU_A * np.expm1(x)),
        lambda x: np.where(x > 0, 1, _ELU_A * np.exp(x)),
    ),
    "selu": (
        lambda x: SELU_LAMBDA * np.where(x > 0, x, SELU_ALPHA * np.expm1(x)),
        lambda x: SELU_LAMBDA * np.where(x > 0, 1, SELU_ALPHA * np.exp(x)),
    ),
    "celu": (
        lambda x: np.maximum(x, 0) + np.minimum(0, _CELU_A * np.expm1(x / _CELU_A)),
        lambda x: np.where(x > 0, 1, np.exp(x / _CELU_A)),
    ),
    "gelu": (_gelu_tanh, _gelu_tanh_grad),
    "silu": (lambda x: x * _sig(x), lambda x: _sig(x) * (1 + x * (1 - _sig(x)))),
    "mish": (lambda x: x * np.tanh(np.logaddexp(0, x)), _mish_grad),
    "softplus": (
        lambda x: np.where(_BETA * x > _THRESH, x, np.logaddexp(0, _BETA * x) / _BETA),
        lambda x: np.where(_BETA * x > _THRESH, 1, _sig(_BETA * x)),
    ),
    "softsign": (lambda x: x / (1 + np.abs(x)), lambda x: 1 / (1 + np.abs(x)) ** 2),
    "hardtanh": (
        lambda x: np.clip(x, _MIN, _MAX),
        lambda x: ((x > _MIN) & (x < _MAX)).astype(x.dtype),
    ),
    "hardsigmoid": (
        lambda x: np.minimum(np.maximum(x + 3, 0), 6) / 6,
        lambda x: np.where((x > -3) & (x < 3), _like(x, 1 / 6), 0),
    ),
    "hardswish": (lambda x: x * np.minimum(np.maximum(x + 3, 0), 6) / 6, _hardswish_grad),
    "log_sigmoid": (lambda x: -np.logaddexp(0, -x), lambda x: _sig(-x)),
    "tanhshrink": (lambda x: x - np.tanh(x), lambda x: np.tanh(x) ** 2),
    "softshrink": (
        lambda x: np.where(x > _SOFT_L, x - _SOFT_L, np.where(x < -_SOFT_L, x + _SOFT_L, 0)),
        lambda x: (np.abs(x) > _SOFT_L).astype(x.dtype),
    ),
    "hardshrink": (
        lambda x: np.where(np.abs(x) > _HARD_L, x, 0),
        lambda x: (np.abs(x) > _HARD_L).astype(x.dtype),
    ),
}

# The fastact parameters that compute the same function as the NumPy formula, where the
# NumPy formula is not the registry default.
NUMPY_PARAMS = {"gelu": {"approximate": "tanh"}}


# ---------------------------------------------------------------- SciPy: f in place and f'
def _scipy_table():
    from scipy import special as sc

    r2 = 1 / math.sqrt(2.0)
    c = 1 / math.sqrt(2.0 * math.pi)

    def gelu_(x):
        return np.multiply(x, 0.5 * sc.erfc(x * -r2), out=x)

    def gelu_grad(x):
        return 0.5 * sc.erfc(x * -r2) + x * c * np.exp(-0.5 * x * x)

    def silu_(x):
        return np.multiply(x, sc.expit(x), out=x)

    table = {
        "sigmoid": (lambda x: sc.expit(x, out=x), lambda x: sc.expit(x) * sc.expit(-x)),
        "log_sigmoid": (lambda x: sc.log_expit(x, out=x), lambda x: sc.expit(-x)),
        "silu": (silu_, lambda x: sc.expit(x) * (1 + x * sc.expit(-x))),
        "gelu": (gelu_, gelu_grad),
    }
    if hasattr(sc, "softplus") and _BETA == 1.0:  # SciPy >= 1.15; no threshold (exact)
        table["softplus"] = (lambda x: sc.softplus(x, out=x), lambda x: sc.expit(x))
    return table


SCIPY_NAMES = ("sigmoid", "log_sigmoid", "silu", "gelu", "softplus")


def scipy_table():
    """``{name: (forward_, fprime)}``; raises ``NotImplementedError`` without SciPy."""
    try:
        return _scipy_table()
    except ImportError as e:
        raise NotImplementedError(f"SciPy is not installed ({e})") from None


# ---------------------------------------------------------------- PyTorch (optional)
def torch_module():
    try:
        import torch
    except ImportError:
        raise NotImplementedError("PyTorch is not installed (optional peer)") from None
    return torch


def torch_forward_(name: str):
    """PyTorch's in-place form of ``name`` (or ``out=`` into the input; else the functional
    form copied back), as a callable on a CPU tensor."""
    torch = torch_module()
    F = torch.nn.functional
    aten = torch.ops.aten
    one = torch.tensor(1.0)
    table = {
        "binary_step": lambda t: torch.heaviside(t, one.to(t.dtype), out=t),
        "sigmoid": torch.sigmoid_,
        "tanh": torch.tanh_,
        "relu": torch.relu_,
        "relu6": lambda t: F.relu6(t, inplace=True),
        "leaky_relu": lambda t: F.leaky_relu_(t, _SLOPE),
        "elu": lambda t: F.elu_(t, _ELU_A),
        "selu": torch.selu_,
        "celu": lambda t: torch.celu_(t, _CELU_A),
        "gelu": lambda t: aten.gelu_(t),
        "silu": lambda t: F.silu(t, inplace=True),
        "mish": lambda t: F.mish(t, inplace=True),
        "softplus": lambda t: aten.softplus.out(t, _BETA, _THRESH, out=t),
        "softsign": lambda t: t.copy_(F.softsign(t)),
        "hardtanh": lambda t: F.hardtanh_(t, _MIN, _MAX),
        "hardsigmoid": lambda t: F.hardsigmoid(t, inplace=True),
        "hardswish": lambda t: F.hardswish(t, inplace=True),
        "log_sigmoid": lambda t: aten.log_sigmoid.out(t, out=t),
        "tanhshrink": lambda t: t.copy_(F.tanhshrink(t)),
        "softshrink": lambda t: aten.softshrink.out(t, _SOFT_L, out=t),
        "hardshrink": lambda t: aten.hardshrink.out(t, _HARD_L, out=t),
    }
    if name not in table:
        raise NotImplementedError(f"no PyTorch form of {name}")
    return table[name]


def torch_backward(name: str):
    """``(prepare, backward)``: ``prepare(x)`` returns what PyTorch's fused ATen backward
    kernel of ``name`` reads besides ``grad`` (the input, or the output for sigmoid and
    tanh, as autograd saves it); ``backward(grad, saved)`` is that kernel."""
    torch = torch_module()
    aten = torch.ops.aten
    from_x = {
        "relu": lambda g, x: aten.threshold_backward(g, x, 0),
        "relu6": lambda g, x: aten.hardtanh_backward(g, x, 0.0, 6.0),
        "leaky_relu": lambda g, x: aten.leaky_relu_backward(g, x, _SLOPE, False),
        "elu": lambda g, x: aten.elu_backward(g, _ELU_A, 1, 1, False, x),
        "selu": lambda g, x: aten.elu_backward(g, SELU_ALPHA, SELU_LAMBDA, 1, False, x),
        "celu": lambda g, x: aten.elu_backward(g, _CELU_A, 1, 1 / _CELU_A, False, x),
        "gelu": lambda g, x: aten.gelu_backward(g, x),
        "silu": lambda g, x: aten.silu_backward(g, x),
        "mish": lambda g, x: aten.mish_backward(g, x),
        "softplus": lambda g, x: aten.softplus_backward(g, x, _BETA, _THRESH),
        "hardtanh": lambda g, x: aten.hardtanh_backward(g, x, _MIN, _MAX),
        "hardsigmoid": lambda g, x: aten.hardsigmoid_backward(g, x),
        "hardswish": lambda g, x: aten.hardswish_backward(g, x),
        "softshrink": lambda g, x: aten.softshrink_backward(g, x, _SOFT_L),
        "hardshrink": lambda g, x: aten.hardshrink_backward(g, x, _HARD_L),
    }
    if name in from_x:
        return (lambda x: x), from_x[name]
    if name == "sigmoid":
        return torch.sigmoid, lambda g, y: aten.sigmoid_backward(g, y)
    if name == "tanh":
        return torch.tanh, lambda g, y: aten.tanh_backward(g, y)
    if name == "log_sigmoid":
        # autograd saves the input and the buffer that log_sigmoid_forward returns
        def prep(x):
            return (x, aten.log_sigmoid_forward(x)[1])

        return prep, lambda g, s: aten.log_sigmoid_backward(g, s[0], s[1])
    raise NotImplementedError(f"PyTorch has no fused backward kernel for {name}")


# ---------------------------------------------------------------- mpmath (accuracy)
def mpmath_table(dtype):
    """``{name: f}`` in mpmath, parameters rounded to ``dtype`` as the kernels receive them
    (SELU's fixed constants are exact)."""
    try:
        import mpmath as mp
    except ImportError:
        raise NotImplementedError("mpmath is not installed (needed for ULP tracking)") from None

    def P(name, key):
        return mp.mpf(float(np.dtype(dtype).type(_p(name, key))))

    half, six, three = mp.mpf("0.5"), mp.mpf(6), mp.mpf(3)
    slope, ea, ca = P("leaky_relu", "negative_slope"), P("elu", "alpha"), P("celu", "alpha")
    beta, thresh = P("softplus", "beta"), P("softplus", "threshold")
    lo, hi = P("hardtanh", "min_val"), P("hardtanh", "max_val")
    sl, hl = P("softshrink", "lambd"), P("hardshrink", "lambd")
    lam, alp = mp.mpf(_SELU_LAMBDA_S), mp.mpf(_SELU_ALPHA_S)

    def sig(x):
        return 1 / (1 + mp.exp(-x))

    def gelu(x):  # mpmath's erfc fails on huge arguments; beyond 60 the tail is < 1e-780
        if x > 60:
            return x
        if x < -60:
            return mp.mpf(0)
        return half * x * mp.erfc(-x / mp.sqrt(2))

    def softplus1(x):  # log(1 + e^x), accurate for both signs
        return x + mp.log1p(mp.exp(-x)) if x > 0 else mp.log1p(mp.exp(x))

    return {
        "binary_step": lambda x: mp.mpf(1) if x >= 0 else mp.mpf(0),
        "sigmoid": sig,
        "tanh": mp.tanh,
        "relu": lambda x: max(x, 0),
        "relu6": lambda x: min(max(x, 0), six),
        "leaky_relu": lambda x: x if x > 0 else slope * x,
        "elu": lambda x: x if x > 0 else ea * mp.expm1(x),
        "selu": lambda x: lam * (x if x > 0 else alp * mp.expm1(x)),
        "celu": lambda x: max(0, x) + min(0, ca * mp.expm1(x / ca)),
        "gelu": gelu,
        "silu": lambda x: x * sig(x),
        "mish": lambda x: x * mp.tanh(softplus1(x)),
        "softplus": lambda x: x if beta * x > thresh else softplus1(beta * x) / beta,
        "softsign": lambda x: x / (1 + abs(x)),
        "hardtanh": lambda x: min(max(x, lo), hi),
        "hardsigmoid": lambda x: min(max(x + three, 0), six) / six,
        "hardswish": lambda x: x * min(max(x + three, 0), six) / six,
        "log_sigmoid": lambda x: -softplus1(-x),
        "tanhshrink": lambda x: x - mp.tanh(x),
        "softshrink": lambda x: x - sl if x > sl else (x + sl if x < -sl else mp.mpf(0)),
        "hardshrink": lambda x: x if abs(x) > hl else mp.mpf(0),
    }
