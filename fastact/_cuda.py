"""CUDA target: grid-stride kernels built from the same scalar formulas (numba-cuda).

Imported only when a CUDA array or ``target="cuda"`` appears, so ``import fastact`` never
imports ``numba.cuda``.
"""

from __future__ import annotations


def available() -> bool:
    """Whether numba-cuda is installed and sees a usable GPU (or the simulator is on)."""
    try:
        from numba import cuda
    except ImportError:
        return False
    try:
        return bool(cuda.is_available())
    except Exception:  # a broken driver install reads as "no GPU"
        return False


def run(fn, inputs, params, out=None, inplace=False, stream=None):
    """Apply formula ``fn`` on the GPU (not yet implemented beyond the availability check)."""
    if not available():
        raise RuntimeError(
            "target='cuda' needs numba-cuda and a usable NVIDIA GPU; none was found "
            "(pip install 'fastact[cuda]' on a machine with a GPU)"
        )
    raise RuntimeError("the CUDA target is not implemented yet")
