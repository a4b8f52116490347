"""Peak memory of an in-place forward next to the temporaries of NumPy's formula, at 10^7
elements (80 MB in float64): ``[activation, impl, n, dtype]``.

asv reports the peak resident size of the whole process, which includes the interpreter,
NumPy, Numba and the input itself; ``PeakMemBaseline`` is that floor (the input made, a
fastact kernel run on a tiny array, nothing else), so the extra of a cell is its value
minus the baseline: ~0 for fastact, one to three arrays for NumPy. Kernels are compiled on a
tiny array in ``setup``; with a warm disk cache that costs next to nothing in memory.
"""

from __future__ import annotations

import numpy as np

import fastact

from .common import ACTIVATIONS, DTYPES, IMPLS, array, make_impl, size, sizes, warm

SIZES = sizes("1e7")


class PeakMem:
    params = [ACTIVATIONS, IMPLS, SIZES, DTYPES]
    param_names = ["activation", "impl", "n", "dtype"]
    timeout = 120

    def setup(self, activation, impl, n, dtype):
        self.impl = I = make_impl(impl, activation, "forward_")
        tiny = I.to_native(array(1000, dtype))
        warm((impl, activation, dtype), lambda: (I.forward_(tiny), I.sync()), I.lenient)
        self.x = I.to_native(array(size(n), dtype))

    def peakmem_forward_(self, activation, impl, n, dtype):
        self.impl.forward_(self.x)
        self.impl.sync()


class PeakMemBaseline:
    params = [SIZES, DTYPES]
    param_names = ["n", "dtype"]

    def setup(self, n, dtype):
        fastact.relu_(np.ones(1000, dtype), target="cpu")
        self.x = array(size(n), dtype)

    def peakmem_baseline(self, n, dtype):
        pass
