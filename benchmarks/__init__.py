"""The fastact airspeed-velocity (asv) suite, parametrised over ``fastact.ACTIVATIONS``.

asv imports this package before any benchmark module, so the thread-pool settings below are
in the environment before Numba (or PyTorch) starts an OpenMP pool: with the default busy-wait
policy, a pool that spins between calls takes the core that asv's own process and the other
implementation need, and parallel timings on a 2-core machine come out up to 2x too slow.
``setdefault`` keeps whatever the person running asv chose.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # GNU and LLVM OpenMP: sleep, don't spin
os.environ.setdefault("KMP_BLOCKTIME", "0")  # Intel OpenMP's equivalent

# Initialise Numba's compiler and disk-cache machinery once, here, with a serial kernel (no
# thread pool starts): asv's forkserver imports this package and forks every cell from it,
# so each cell then skips the ~0.7 s first-dispatch cost. Fork-safe: no thread exists yet.
import numpy as _np  # noqa: E402

import fastact as _fastact  # noqa: E402

_fastact.relu_(_np.zeros(8), target="cpu")
