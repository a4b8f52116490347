"""PTX audit of the non-elementwise CUDA kernels (softmax, log_softmax, their backward
passes, maxout, prelu), on any machine: ``numba.cuda.compile_ptx`` needs no GPU.

Every float32 kernel is compiled for compute capabilities 9.0, 8.0 and 7.5 and must contain
no float64 instruction; the softmax kernels must reduce through shared memory with barriers
and call libdevice's exp (``ex2``), the PReLU backward must use atomics. Select with
``pytest -k ptx``.
"""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("numba_cuda") is None,
    reason="numba-cuda is not installed (pip install 'fastact[cuda]')",
)

CCS = [(9, 0), (8, 0), (7, 5)]
KINDS = (
    "softmax_rows log_softmax_rows softmax_cols log_softmax_cols softmax_bwd_rows "
    "log_softmax_bwd_rows softmax_bwd_cols log_softmax_bwd_cols maxout maxout_bwd prelu "
    "prelu_grad prelu_bwd"
).split()

# An instruction's opcode (after an optional predicate guard), e.g. "cvt.f64.f32".
_OPCODE = re.compile(r"^\s*(?:@!?%p\d+\s+)?([a-z][\w.]*)", re.M)


def f64_instructions(ptx: str) -> list[str]:
    """Opcodes that operate on float64, plus any float64 register declaration."""
    ops = [op for op in _OPCODE.findall(ptx) if ".f64" in op]
    regs = [ln.strip() for ln in ptx.splitlines() if re.match(r"\s*\.reg\s+\.f64\b", ln)]
    return ops + regs


def test_ptx_nonelementwise_audit_covers_every_kernel():
    from fastact import _cuda_nonelementwise as N

    assert set(KINDS) == set(N.KINDS)


def test_ptx_nonelementwise_detector_sees_float64():
    from fastact import _cuda_nonelementwise as N

    assert f64_instructions(N.compile_ptx("softmax_rows", np.float64))
    assert not f64_instructions(N.compile_ptx("softmax_rows", np.float32))


@pytest.mark.parametrize("cc", CCS, ids=lambda cc: f"sm{cc[0]}{cc[1]}")
@pytest.mark.parametrize("kind", KINDS)
def test_ptx_nonelementwise_float32_kernel_has_no_f64(kind, cc):
    from fastact import _cuda_nonelementwise as N

    ptx = N.compile_ptx(kind, np.float32, cc=cc, ndim=3)
    assert f".target sm_{cc[0]}{cc[1]}" in ptx
    assert ".entry" in ptx and "ld.global.f32" in ptx and "st.global.f32" in ptx
    bad = f64_instructions(ptx)
    assert not bad, f"float64 in the float32 kernel {kind}: {sorted(set(bad))[:10]}"
    if kind.endswith("softmax_rows") or kind.endswith("softmax_cols"):
        assert "ex2.approx" in ptx, "exp is not libdevice's"
    if kind.endswith("_rows"):
        assert "bar.sync" in ptx and "st.shared.f32" in ptx, "no shared-memory reduction"
    if kind == "prelu_bwd":
        assert "atom.shared.add.f32" in ptx and "atom.global.add.f32" in ptx


@pytest.mark.parametrize("kind", ["prelu", "prelu_grad", "prelu_bwd", "maxout"])
def test_ptx_nonelementwise_float32_flat_kernel_has_no_f64(kind):
    """The 1-D (flat) variants that contiguous single-weight PReLU inputs run."""
    from fastact import _cuda_nonelementwise as N

    assert not f64_instructions(N.compile_ptx(kind, np.float32, ndim=1))
