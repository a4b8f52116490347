"""Time of every activation's in-place forward, derivative and fused backward, next to the
plain NumPy formula, SciPy and PyTorch: ``[activation, impl, n, dtype]``.

- ``forward_``: fastact ``NAME_(x)``; NumPy ``x[...] = f(x)``; SciPy's ufunc with ``out=x``;
  PyTorch's in-place function. Every timed call sees fresh input (``number = 1``, and
  ``setup`` refills ``x``): repeating an in-place activation on its own output drifts to
  subnormals or infinities (leaky_relu, selu, tanhshrink), whose speed is not the point.
- ``grad``: fastact ``NAME_grad(x, out=)``; NumPy/SciPy the derivative's formula (new array).
- ``backward``: fastact ``NAME_backward(grad, x, out=)``; NumPy/SciPy ``grad * f'(x)``;
  PyTorch the fused ATen kernel autograd calls (``sigmoid_backward`` etc.).
CUDA cells copy the data to the device in ``setup`` and synchronise inside the timed call.
"""

from __future__ import annotations

from .common import ACTIVATIONS, DTYPES, IMPLS, buffer, fill, make_impl, size, sizes, warm


class _Cells:
    params = [ACTIVATIONS, IMPLS, sizes("1e4", "1e6"), DTYPES]
    param_names = ["activation", "impl", "n", "dtype"]
    kind = ""
    timeout = 120

    def setup(self, activation, impl, n, dtype):
        self.impl = I = make_impl(impl, activation, self.kind)
        n = size(n)
        key = (impl, activation, self.kind, dtype, n)
        if self.kind == "forward_":
            host = buffer("x", n, dtype)
            x = I.to_native(host)
            warm(key, lambda: (I.forward_(x), I.sync()), I.lenient)
            self.x = I.to_native(fill(host))  # fresh input for every timed call
        elif self.kind == "grad":
            self.x = I.to_native(buffer("x", n, dtype))
            self.out = I.to_native(buffer("out", n, dtype))
            warm(key, lambda: (I.grad(self.x, self.out), I.sync()), I.lenient)
        else:
            self.g = I.to_native(buffer("g", n, dtype, seed=1))
            self.s = I.saved(I.to_native(buffer("x", n, dtype)))
            self.out = I.to_native(buffer("out", n, dtype))
            warm(key, lambda: (I.backward(self.g, self.s, self.out), I.sync()), I.lenient)


class Forward(_Cells):
    kind = "forward_"
    number = 1

    def time_forward_(self, activation, impl, n, dtype):
        self.impl.forward_(self.x)
        self.impl.sync()


class Grad(_Cells):
    kind = "grad"

    def time_grad(self, activation, impl, n, dtype):
        self.impl.grad(self.x, self.out)
        self.impl.sync()


class Backward(_Cells):
    kind = "backward"

    def time_backward(self, activation, impl, n, dtype):
        self.impl.backward(self.g, self.s, self.out)
        self.impl.sync()
