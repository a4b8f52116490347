"""PTX audit of the CUDA kernels, on any machine (``numba.cuda.compile_ptx`` needs no GPU).

Every float32 kernel (each activation's f, f' and f'(y) as the 1-input and 2-input
grid-stride kernels) is compiled for compute capabilities 9.0, 8.0 and 7.5 (the strided
n-d variants for 9.0) and must contain no float64 instruction; every float32 device function
must return float32.
Select with ``pytest -k ptx``.
"""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest

import fastact

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("numba_cuda") is None,
    reason="numba-cuda is not installed (pip install 'fastact[cuda]')",
)

CCS = [(9, 0), (8, 0), (7, 5)]


def _formulas():
    """(id, formula, kinds) for every distinct formula of the registry."""
    seen = {}
    for act in fastact.ACTIVATIONS.values():
        variants = act.variants.items() if act.variant else [("", act.formulas)]
        for vname, fs in variants:
            tag = act.name + (f"-{vname}" if vname else "")
            for role, fn, nins in (
                ("f", fs.f, (1,)),
                ("grad", fs.grad, (1, 2)),
                ("grad_y", fs.grad_y, (2,)),
            ):
                if fn is None:
                    continue
                key = fn.__name__
                if key not in seen:
                    seen[key] = (f"{tag}.{role}", fn, set())
                seen[key][2].update(nins)
    return list(seen.values())


FORMULAS = _formulas()
KERNELS = [
    pytest.param(
        fn, nin, strided, cc, id=f"{ident}-n{nin}{'-strided' if strided else ''}-sm{cc[0]}{cc[1]}"
    )
    for ident, fn, nins in FORMULAS
    for nin in sorted(nins)
    for strided, ccs in ((False, CCS), (True, CCS[:1]))
    for cc in ccs
]

# An instruction's opcode (after an optional predicate guard), e.g. "cvt.f64.f32".
_OPCODE = re.compile(r"^\s*(?:@!?%p\d+\s+)?([a-z][\w.]*)", re.M)


def f64_instructions(ptx: str) -> list[str]:
    """Opcodes that operate on float64, plus any float64 register declaration."""
    ops = [op for op in _OPCODE.findall(ptx) if ".f64" in op]
    regs = [ln.strip() for ln in ptx.splitlines() if re.match(r"\s*\.reg\s+\.f64\b", ln)]
    return ops + regs


def test_ptx_audit_covers_every_activation():
    names = {ident.split(".")[0].split("-")[0] for ident, _, _ in FORMULAS}
    assert names == set(fastact.ACTIVATIONS)
    assert len(KERNELS) >= 4 * len(fastact.ACTIVATIONS)


def test_ptx_detector_sees_float64():
    """The audit's detector flags a float64 kernel and passes a float32 one."""
    from fastact import _cuda

    ptx64 = _cuda.compile_ptx(fastact.ACTIVATIONS["sigmoid"].formulas.f, 1, np.float64)
    ptx32 = _cuda.compile_ptx(fastact.ACTIVATIONS["sigmoid"].formulas.f, 1, np.float32)
    assert f64_instructions(ptx64)
    assert not f64_instructions(ptx32)
    assert "ld.global.f32" in ptx32 and "st.global.f32" in ptx32


@pytest.mark.parametrize("fn, nin, strided, cc", KERNELS)
def test_ptx_float32_kernel_has_no_f64(fn, nin, strided, cc):
    from fastact import _cuda

    ptx = _cuda.compile_ptx(fn, nin, np.float32, cc=cc, strided=strided)
    assert f".target sm_{cc[0]}{cc[1]}" in ptx
    assert ".entry" in ptx
    bad = f64_instructions(ptx)
    assert not bad, f"float64 in the float32 kernel of {fn.__name__}: {sorted(set(bad))[:10]}"


@pytest.mark.parametrize("fn", [pytest.param(fn, id=ident) for ident, fn, _ in FORMULAS])
def test_ptx_float32_device_function_returns_float32(fn):
    from numba import float32

    from fastact import _cuda

    ptx, resty = _cuda.device_return_type(fn, np.float32, cc=(9, 0))
    assert resty == float32, f"{fn.__name__} returns {resty} for float32 input"
    assert not f64_instructions(ptx)
