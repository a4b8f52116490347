"""The registry: one record per elementwise activation.

A record names the scalar formulas (``_formulas``), the parameters with PyTorch's names and
defaults, how to validate them, whether the derivative can be taken from the output, and
the text of the docstrings. Public functions, kernels, tests, benchmarks and the CLI are all
generated from ``REGISTRY``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import _formulas as F


@dataclass(frozen=True)
class Formulas:
    """The scalar functions of one activation (one variant of it)."""

    f: Callable
    grad: Callable
    grad_y: Callable | None = None


@dataclass
class Activation:
    """One elementwise activation.

    ``params`` maps each keyword parameter to its default. Float parameters become trailing
    scalar arguments of the formulas, in this order; a string parameter named by
    ``variant`` selects among ``variants`` (e.g. gelu's ``approximate``).
    """

    name: str
    formula: str
    formulas: Formulas | None = None
    params: dict[str, Any] = field(default_factory=dict)
    variant: str | None = None
    variants: dict[str, Formulas] = field(default_factory=dict)
    checks: tuple[tuple[str, Callable[[float], bool], str], ...] = ()
    y_checks: tuple[tuple[str, Callable[[float], bool], str], ...] = ()
    # how much arithmetic per element, for target="auto" (_dispatch.parallel_threshold), one
    # family or (forward's, backward's): "linear" (memory-bound), "affine" (hardsigmoid,
    # hardswish: a clamp and a multiply), "light" (a little more, or a division), "cheap"
    # (sigmoid), "transcendental", "heavy" (exp-based with the most arithmetic), "heaviest"
    # (gelu)
    family: str | tuple[str, str] = "transcendental"
    kinks: str = ""
    see_also: str = ""
    # filled in by fastact._api
    forward: Callable | None = None
    forward_: Callable | None = None
    grad: Callable | None = None
    backward: Callable | None = None

    def family_for(self, backward: bool = False) -> str:
        """The family whose threshold ``target="auto"`` takes for the pass."""
        return self.family if isinstance(self.family, str) else self.family[backward]

    @property
    def from_output(self) -> bool:
        """Whether ``backward`` accepts the output ``y=`` instead of the input."""
        return all(f.grad_y is not None for f in self._all_formulas())

    @property
    def float_params(self) -> tuple[str, ...]:
        return tuple(k for k in self.params if k != self.variant)

    def _all_formulas(self) -> list[Formulas]:
        return list(self.variants.values()) if self.variant else [self.formulas]

    def resolve(self, params: dict[str, Any], from_y: bool = False) -> tuple[Formulas, tuple]:
        """Validate keyword parameters; return the formulas and the float parameters.

        Raises ``ValueError`` naming the offending parameter.
        """
        formulas = self.formulas
        if self.variant:
            choice = params[self.variant]
            if choice not in self.variants:
                valid = ", ".join(repr(v) for v in self.variants)
                raise ValueError(
                    f"{self.name}: {self.variant}={choice!r} is not one of {valid}"
                )
            formulas = self.variants[choice]
        values = []
        for key in self.float_params:
            v = params[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) and not hasattr(
                v, "__float__"
            ):
                raise ValueError(f"{self.name}: {key} must be a real number, got {v!r}")
            try:
                v = float(v)
            except (TypeError, ValueError) as e:
                raise ValueError(f"{self.name}: {key} must be a real number, got {v!r}") from e
            if math.isnan(v):
                raise ValueError(f"{self.name}: {key} must not be NaN")
            values.append(v)
        named = dict(zip(self.float_params, values))
        for key, ok, why in self.checks + (self.y_checks if from_y else ()):
            args = [named[k] for k in key.split(",")]
            if not ok(*args):
                raise ValueError(f"{self.name}: {why} (got {key}={', '.join(map(repr, args))})")
        return formulas, tuple(values)


def _finite(v: float) -> bool:
    return math.isfinite(v)


def _fin(name: str):
    return (name, _finite, f"{name} must be finite")


_SHRINK_KINKS = "f'(±lambd) = 0 (PyTorch's convention)."

REGISTRY: dict[str, Activation] = {
    a.name: a
    for a in [
        Activation(
            "binary_step",
            "1 if x >= 0 else 0",
            Formulas(F.binary_step, F.binary_step_grad, F.binary_step_grad_y),
            family="linear",
            kinks="f' = 0 everywhere (also at 0), NaN for NaN.",
        ),
        Activation(
            "sigmoid",
            "1 / (1 + exp(-x))",
            Formulas(F.sigmoid, F.sigmoid_grad, F.sigmoid_grad_y),
            kinks="sigmoid(-inf) = 0, sigmoid(inf) = 1; f' = σ(x)σ(-x) (no cancellation).",
            see_also="scipy.special.expit, torch.sigmoid",
            family=("cheap", "transcendental"),
        ),
        Activation(
            "tanh",
            "tanh(x)",
            Formulas(F.tanh, F.tanh_grad, F.tanh_grad_y),
            kinks="f'(x) = 1 - tanh²(x), computed as 4e^-2|x|/(1+e^-2|x|)².",
            see_also="numpy.tanh, torch.tanh",
        ),
        Activation(
            "relu",
            "max(0, x)",
            Formulas(F.relu, F.relu_grad, F.relu_grad_y),
            family="linear",
            kinks="relu'(0) = 0; relu(-0.0) = +0.0.",
            see_also="torch.nn.functional.relu",
        ),
        Activation(
            "relu6",
            "min(max(0, x), 6)",
            Formulas(F.relu6, F.relu6_grad, F.relu6_grad_y),
            family="linear",
            kinks="relu6'(0) = relu6'(6) = 0.",
            see_also="torch.nn.functional.relu6",
        ),
        Activation(
            "leaky_relu",
            "x if x > 0 else negative_slope * x",
            Formulas(F.leaky_relu, F.leaky_relu_grad, F.leaky_relu_grad_y),
            params={"negative_slope": 0.01},
            checks=(_fin("negative_slope"),),
            y_checks=(
                (
                    "negative_slope",
                    lambda s: s >= 0,
                    "backward from y= needs negative_slope >= 0 (otherwise y does not "
                    "determine x)",
                ),
            ),
            family="linear",
            kinks="leaky_relu'(0) = negative_slope.",
            see_also="torch.nn.functional.leaky_relu",
        ),
        Activation(
            "elu",
            "x if x > 0 else alpha * (exp(x) - 1)",
            Formulas(F.elu, F.elu_grad, F.elu_grad_y),
            params={"alpha": 1.0},
            checks=(_fin("alpha"),),
            y_checks=(
                (
                    "alpha",
                    lambda a: a >= 0,
                    "backward from y= needs alpha >= 0 (otherwise y does not determine x)",
                ),
            ),
            kinks="elu'(0) = alpha; elu(-inf) = -alpha.",
            see_also="torch.nn.functional.elu",
            family=("transcendental", "cheap"),
        ),
        Activation(
            "selu",
            "scale * (x if x > 0 else alpha * (exp(x) - 1)), scale = 1.0507009873554804934, "
            "alpha = 1.6732632423543772848",
            Formulas(F.selu, F.selu_grad, F.selu_grad_y),
            kinks="selu'(0) = scale * alpha.",
            see_also="torch.nn.functional.selu",
            family=("transcendental", "cheap"),
        ),
        Activation(
            "celu",
            "max(0, x) + min(0, alpha * (exp(x / alpha) - 1))",
            Formulas(F.celu, F.celu_grad, F.celu_grad_y),
            params={"alpha": 1.0},
            checks=(_fin("alpha"), ("alpha", lambda a: a > 0, "alpha must be > 0")),
            kinks="celu'(0) = 1.",
            see_also="torch.nn.functional.celu",
        ),
        Activation(
            "gelu",
            "x * Φ(x) = x/2 * (1 + erf(x/√2)); approximate='tanh': "
            "x/2 * (1 + tanh(√(2/π)(x + 0.044715x³)))",
            params={"approximate": "none"},
            variant="approximate",
            variants={
                "none": Formulas(F.gelu, F.gelu_grad),
                "tanh": Formulas(F.gelu_tanh, F.gelu_tanh_grad),
            },
            kinks="gelu(-inf) = 0; the x < 0 tail is computed from Φ(-|x|) directly, not 1 + erf.",
            see_also="torch.nn.functional.gelu, jax.nn.gelu",
            family="heaviest",
        ),
        Activation(
            "silu",
            "x * sigmoid(x)",
            Formulas(F.silu, F.silu_grad),
            kinks="silu(-inf) = 0, silu'(-inf) = 0.",
            see_also="torch.nn.functional.silu",
            family="heavy",
        ),
        Activation(
            "mish",
            "x * tanh(softplus(x))",
            Formulas(F.mish, F.mish_grad),
            kinks="mish(-inf) = 0, mish'(-inf) = 0.",
            family="heavy",
            see_also="torch.nn.functional.mish",
        ),
        Activation(
            "softplus",
            "log(1 + exp(beta * x)) / beta, or x where beta * x > threshold",
            Formulas(F.softplus, F.softplus_grad, F.softplus_grad_y),
            params={"beta": 1.0, "threshold": 20.0},
            checks=(_fin("beta"), ("beta", lambda b: b > 0, "beta must be > 0")),
            kinks="f' = sigmoid(beta * x), and 1 where beta * x > threshold.",
            see_also="torch.nn.functional.softplus, numpy.logaddexp",
            family=("heavy", "transcendental"),
        ),
        Activation(
            "softsign",
            "x / (1 + |x|)",
            Formulas(F.softsign, F.softsign_grad, F.softsign_grad_y),
            kinks="softsign(±inf) = ±1.",
            family="light",
            see_also="torch.nn.functional.softsign",
        ),
        Activation(
            "hardtanh",
            "min(max(x, min_val), max_val)",
            Formulas(F.hardtanh, F.hardtanh_grad, F.hardtanh_grad_y),
            params={"min_val": -1.0, "max_val": 1.0},
            checks=(
                ("min_val,max_val", lambda a, b: a <= b, "min_val must be <= max_val"),
            ),
            family="linear",
            kinks="f'(min_val) = f'(max_val) = 0.",
            see_also="torch.nn.functional.hardtanh",
        ),
        Activation(
            "hardsigmoid",
            "relu6(x + 3) / 6",
            Formulas(F.hardsigmoid, F.hardsigmoid_grad, F.hardsigmoid_grad_y),
            kinks="f'(±3) = 0, exactly 1/6 strictly inside.",
            see_also="torch.nn.functional.hardsigmoid",
            family=("affine", "linear"),
        ),
        Activation(
            "hardswish",
            "x * relu6(x + 3) / 6",
            Formulas(F.hardswish, F.hardswish_grad),
            kinks="f'(-3) = 0, f'(3) = 1 (current PyTorch); hardswish(-inf) = 0.",
            see_also="torch.nn.functional.hardswish",
            family=("affine", "linear"),
        ),
        Activation(
            "log_sigmoid",
            "log(sigmoid(x)) = -softplus(-x)",
            Formulas(F.log_sigmoid, F.log_sigmoid_grad, F.log_sigmoid_grad_y),
            kinks="log_sigmoid(-inf) = -inf; f' = sigmoid(-x).",
            see_also="scipy.special.log_expit, torch.nn.functional.logsigmoid",
            family=("transcendental", "cheap"),
        ),
        Activation(
            "tanhshrink",
            "x - tanh(x)",
            Formulas(F.tanhshrink, F.tanhshrink_grad),
            kinks="computed without cancellation near 0; f' = tanh²(x).",
            see_also="torch.nn.functional.tanhshrink",
            family=("heavy", "transcendental"),
        ),
        Activation(
            "softshrink",
            "x - lambd if x > lambd; x + lambd if x < -lambd; else 0",
            Formulas(F.softshrink, F.shrink_grad, F.nonzero_grad_y),
            params={"lambd": 0.5},
            checks=(_fin("lambd"), ("lambd", lambda v: v >= 0, "lambd must be >= 0")),
            family="linear",  # x minus a clamp: vminps/vmaxps, as cheap as hardtanh
            kinks=_SHRINK_KINKS,
            see_also="torch.nn.functional.softshrink",
        ),
        Activation(
            "hardshrink",
            "x if |x| > lambd else 0",
            Formulas(F.hardshrink, F.shrink_grad, F.nonzero_grad_y),
            params={"lambd": 0.5},
            checks=(_fin("lambd"), ("lambd", lambda v: v >= 0, "lambd must be >= 0")),
            family="linear",
            kinks=_SHRINK_KINKS,
            see_also="torch.nn.functional.hardshrink",
        ),
    ]
}


def select_names(only: str | None) -> list[str]:
    """Activation names from a comma-separated ``--only`` value (all of them for None/empty);
    ``ValueError`` naming the unknown ones."""
    if not only:
        return list(REGISTRY)
    names = [s.strip() for s in only.split(",") if s.strip()]
    bad = [s for s in names if s not in REGISTRY]
    if bad or not names:
        raise ValueError(
            f"unknown activation(s) {', '.join(bad)}; known: {', '.join(REGISTRY)}"
        )
    return names
