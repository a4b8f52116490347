"""Import time, and the threads that the parallel timings ran with.

- ``timeraw_import``: ``import fastact`` in a fresh interpreter (SPEC: under 0.5 s).
- ``timeraw_first_call``: import plus the first in-place sigmoid with a warm disk cache.
- ``track_threads``: ``numba.get_num_threads()``.
- ``track_threading_layer``: 1 for the layer Numba chose (omp, tbb or workqueue), else 0.
- ``track_omp_wait_policy_passive``: 1 when ``OMP_WAIT_POLICY=passive`` reached the
  benchmarks (set by ``benchmarks/__init__.py`` unless the caller chose otherwise).
"""

from __future__ import annotations

import os

import numpy as np

import fastact

_FIRST_CALL = """
import numpy as np
import fastact
fastact.sigmoid_(np.ones(1000, np.float32), target="cpu")
"""


class ImportTime:
    timeout = 120

    def timeraw_import(self):
        return "import fastact"

    def timeraw_first_call(self):
        # warm the disk cache in this process first: the measurement is the cached load
        fastact.sigmoid_(np.ones(1000, np.float32), target="cpu")
        return _FIRST_CALL


class Threading:
    def setup(self, *args):
        # the threading layer is chosen when the first parallel kernel runs
        fastact.relu_(np.zeros(1 << 10, np.float32), target="parallel")

    def track_threads(self):
        import numba

        return numba.get_num_threads()

    track_threads.unit = "threads"

    def track_threading_layer(self, layer):
        import numba

        return int(numba.threading_layer() == layer)

    track_threading_layer.params = ["omp", "tbb", "workqueue"]
    track_threading_layer.param_names = ["layer"]
    track_threading_layer.unit = "active (1 = yes)"

    def track_omp_wait_policy_passive(self):
        return int(os.environ.get("OMP_WAIT_POLICY", "").lower() == "passive")

    track_omp_wait_policy_passive.unit = "set (1 = yes)"
