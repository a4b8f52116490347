"""``python -m fastact info``: what fastact runs on, and a tiny demonstration."""

from __future__ import annotations

import os
import platform


def _simd_features() -> str:
    try:
        from llvmlite import binding as ll

        feats = ll.get_host_cpu_features()
        wanted = ("sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "neon")
        have = [f for f in wanted if feats.get(f, False)]
        return f"{ll.get_host_cpu_name()}: {' '.join(have) or 'none of ' + ' '.join(wanted)}"
    except Exception as e:  # pragma: no cover - exotic platforms
        return f"unknown ({e})"


def _cache_folder() -> str:
    from . import _cpu, _formulas

    disp = _cpu.flat_kernel(_formulas.relu, 1, False)
    cache = getattr(disp, "_cache", None)
    path = getattr(cache, "_cache_path", None)
    return path or "none (no writable cache folder; kernels compile in memory)"


def _tuning() -> str:
    """Which of the measured tunings this CPU takes: tables, prefetch plan, in-place stores,
    auto thresholds."""
    from . import _cpu, _dispatch, _vmath

    level = {3: "L1", 2: "L2", 1: "L3", 0: "non-temporal"}

    def plan(p):
        return " + ".join(f"{level[loc]} {ahead} B ahead" for ahead, loc in p) or "none"

    from numba.core import config

    target = ""  # Numba's own choice of target, where set, decides whether AVX-512 is used
    if config.CPU_NAME or config.CPU_FEATURES is not None:
        target = f"compiled for {config.CPU_NAME or 'this CPU'} (NUMBA_CPU_NAME/FEATURES); "
    if not _vmath._AVX512:
        stores = "whole-vector stores"
    elif _cpu.MASKED_STORES_KEEP_UP:
        stores = "masked stores"
    else:
        stores = "in parallel, whole-vector stores where x is kept"
    return target + (
        f"{_dispatch.CPU_KIND}: tables {'on' if _vmath._AVX512 else 'off'}; prefetch "
        f"forward {plan(_cpu.PREFETCH_FORWARD)}, backward {plan(_cpu.PREFETCH_BACKWARD)}; "
        f"in place {stores}; target='auto' by the thresholds measured on such a CPU"
    )


def info() -> dict[str, str]:
    import numba
    import numpy as np

    import fastact

    from . import _cuda

    # the threading layer is known once a parallel kernel has run
    x = np.zeros(1 << 17, np.float32)
    fastact.relu_(x, target="parallel")
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = "not initialised"
    return {
        "fastact": fastact.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "platform": f"{platform.system()} {platform.machine()}",
        "threading layer": layer,
        "threads": f"{numba.get_num_threads()} of {os.cpu_count()} CPUs",
        "CPU SIMD": _simd_features(),
        "tuning": _tuning(),
        "kernel cache": _cache_folder(),
        "CUDA": "available" if _cuda.available() else "not available",
        "activations": str(len(fastact.ACTIVATIONS)),
    }


def print_info() -> None:
    rows = info()
    width = max(map(len, rows))
    for k, v in rows.items():
        print(f"{k:<{width}}  {v}")


def demo(n: int = 8) -> None:
    """Forward in place, then the backward pass from the output alone."""
    import numpy as np

    import fastact

    x = np.linspace(-3, 3, n, dtype=np.float32)
    print("x                    ", np.array2string(x, precision=3))
    y = fastact.sigmoid_(x.copy())
    print("sigmoid_(x) in place ", np.array2string(y, precision=3))
    g = np.ones_like(y)
    fastact.sigmoid_backward(g, y=y, out=g)
    print("sigmoid_backward(y=) ", np.array2string(g, precision=3))
    print("gelu(x)              ", np.array2string(fastact.gelu(x), precision=3))
