"""fastact: activation functions of neural networks and their derivatives, compiled with
Numba, in place, on the CPU and on NVIDIA GPUs.

Every elementwise activation NAME in ``ACTIVATIONS`` has four functions: ``NAME(x)``,
``NAME_(x)`` (in place), ``NAME_grad(x)`` and ``NAME_backward(grad, x | y=)``.
"""

from __future__ import annotations

import warnings as _warnings
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from numba.core.errors import NumbaIRAssumptionWarning as _NumbaIRAssumptionWarning

from . import _api
from ._registry import REGISTRY as _REGISTRY
from ._registry import Activation

try:
    __version__ = _version("fastact")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

# Numba's internal pedantic check misfires on the inlined math layer; the code is correct.
_warnings.filterwarnings("ignore", category=_NumbaIRAssumptionWarning, module=r".*fastact")

ACTIVATIONS: dict[str, Activation] = _REGISTRY
"""Registry of the elementwise activations, by name."""

__all__ = ["ACTIVATIONS", "Activation", "__version__"]

for _act in ACTIVATIONS.values():
    _api.build(_act)
    for _fn in (_act.forward, _act.forward_, _act.grad, _act.backward):
        globals()[_fn.__name__] = _fn
        __all__.append(_fn.__name__)

del _act, _fn

from ._nonelementwise import *  # noqa: E402,F403
from ._nonelementwise import __all__ as _ne_all  # noqa: E402

__all__ += _ne_all
del _ne_all
