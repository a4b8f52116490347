"""Non-elementwise activations: PReLU, maxout, softmax and log-softmax, with their backward
passes, on the CPU (``"cpu"``/``"parallel"``); CUDA arrays go to ``_cuda.nonelementwise``.

Modules: ``_softmax`` (softmax family), ``_prelu_maxout``, ``_nelayout`` (checks, canonical
strided views), ``_nekernels`` (the Numba kernels). Any shape, axis and strides; in place
writes through views and allocates nothing the size of the input; every check runs before
any write. Conventions where the SPEC is silent:

- softmax/log-softmax of a row holding NaN or +inf, or of a row of only -inf, is NaN in the
  whole row (as PyTorch, SciPy and JAX: ``-inf - (-inf)``); -inf beside a finite entry
  gives 0 (log-softmax: -inf); huge finite values are fine (the max is subtracted).
- maxout: NaN wins (``np.max``); the backward routes each gradient to the first arg-max of
  its group (``np.argmax``: the first NaN if the group holds one).
- prelu is ``leaky_relu`` with a per-channel slope, by the same scalar formulas:
  prelu'(0) = weight (PyTorch), prelu'(NaN) = NaN (SPEC §3), prelu(x <= 0, weight 0) = +0.
- A non-integer ``axis`` or ``pieces`` is a ``ValueError`` (like an out-of-range one).
"""

from __future__ import annotations

from ._prelu_maxout import maxout, maxout_backward, prelu, prelu_, prelu_backward, prelu_grad
from ._softmax import (
    log_softmax,
    log_softmax_,
    log_softmax_backward,
    softmax,
    softmax_,
    softmax_backward,
)

__all__ = [
    "prelu",
    "prelu_",
    "prelu_grad",
    "prelu_backward",
    "maxout",
    "maxout_backward",
    "softmax",
    "softmax_",
    "softmax_backward",
    "log_softmax",
    "log_softmax_",
    "log_softmax_backward",
]

for _f in (
    prelu,
    prelu_,
    prelu_grad,
    prelu_backward,
    maxout,
    maxout_backward,
    softmax,
    softmax_,
    softmax_backward,
    log_softmax,
    log_softmax_,
    log_softmax_backward,
):
    _f.__module__ = "fastact"
del _f
