"""``python -m fastact bench``: fastact against the memory floor and its peers, in one run.

For each activation, dtype and size it times, interleaved (every repeat runs every
implementation once, in a shuffled order; the reported figure is the median over repeats):

- ``fastact-cpu`` / ``fastact-parallel``: ``NAME_(x, target=...)`` in place;
- the memory floor: ``floor-cpu`` = ``np.multiply(x, c, out=x)`` (one thread) and
  ``floor-parallel`` = a Numba ``prange`` in-place multiply (all threads); the backward floor
  (three streams) is ``np.multiply(g, x, out=g)`` and its ``prange`` twin;
- peers, where installed: ``numpy`` (the textbook formula, in place through ``out=`` with
  one scratch array, see ``NUMPY``), ``scipy`` (``expit`` / ``log_expit`` / ``softplus``
  with ``out=``), ``numexpr`` (``ne.evaluate(expr, out=x)``) and ``torch`` (the in-place
  function on ``torch.from_numpy(x)`` where PyTorch has one, otherwise out of place: the
  impl is then named ``torch(oop)``);
- backward: ``NAME_backward(g, x, out=g)`` for both targets against the 3-stream floor.

Columns: ms (median of the call alone: refilling the input from a seeded master copy,
values uniform in [-6, 6], is not timed), GB/s (nominal traffic: 2 streams forward, 3
backward, whatever the implementation really moves), x floor (time / the floor with the
same threads: one-thread peers NumPy and SciPy against ``floor-cpu``, multi-threaded numexpr
and PyTorch against ``floor-parallel``), x best peer (fastest peer's time / fastact's time:
above 1 means fastact is faster; forward only).
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._registry import select_names

FLOAT_TYPES = {"float32": np.float32, "float64": np.float64}
QUICK = "sizes 1e6 float32 only, every activation, 5 repeats, forward and backward"


# ---------------------------------------------------------------------------------------
# Reference NumPy formulas: name -> f(x, t, **params), in place on x with scratch t.
# Textbook formulas with ufunc ``out=`` (no temporaries the size of x, except the boolean
# masks of softplus). NumPy has no erf: gelu is the tanh approximation.


def _sigmoid(x, t):
    np.negative(x, out=x)
    np.exp(x, out=x)
    np.add(x, 1, out=x)
    np.reciprocal(x, out=x)


def _elu_like(x, t, alpha, scale=1.0, inner=1.0):
    # scale * (max(0, x) + min(0, alpha * expm1(x / inner)))
    np.minimum(x, 0, out=t)
    if inner != 1.0:
        np.divide(t, inner, out=t)
    np.expm1(t, out=t)
    np.multiply(t, alpha, out=t)
    np.maximum(x, 0, out=x)
    np.add(x, t, out=x)
    if scale != 1.0:
        np.multiply(x, scale, out=x)


_SELU_SCALE = 1.0507009873554804934
_SELU_ALPHA = 1.6732632423543772848
_GELU_K = math.sqrt(2.0 / math.pi)


def _gelu_tanh(x, t, approximate="none"):
    # x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
    np.multiply(x, x, out=t)
    np.multiply(t, 0.044715, out=t)
    np.add(t, 1, out=t)
    np.multiply(t, x, out=t)
    np.multiply(t, _GELU_K, out=t)
    np.tanh(t, out=t)
    np.add(t, 1, out=t)
    np.multiply(t, 0.5, out=t)
    np.multiply(x, t, out=x)


def _silu(x, t):
    np.negative(x, out=t)
    np.exp(t, out=t)
    np.add(t, 1, out=t)
    np.divide(x, t, out=x)


def _mish(x, t):
    np.logaddexp(x, 0, out=t)
    np.tanh(t, out=t)
    np.multiply(x, t, out=x)


def _softplus(x, t, beta, threshold):
    # log(1 + exp(beta x)) / beta, or x where beta x > threshold
    np.multiply(x, beta, out=t)
    keep = t > threshold
    np.logaddexp(t, 0, out=t)
    np.divide(t, beta, out=t)
    np.copyto(x, t, where=~keep)


def _softsign(x, t):
    np.abs(x, out=t)
    np.add(t, 1, out=t)
    np.divide(x, t, out=x)


def _hardsigmoid(x, t):
    np.add(x, 3, out=x)
    np.clip(x, 0, 6, out=x)
    np.divide(x, 6, out=x)


def _hardswish(x, t):
    np.add(x, 3, out=t)
    np.clip(t, 0, 6, out=t)
    np.divide(t, 6, out=t)
    np.multiply(x, t, out=x)


def _log_sigmoid(x, t):
    np.negative(x, out=x)
    np.logaddexp(x, 0, out=x)
    np.negative(x, out=x)


def _tanhshrink(x, t):
    np.tanh(x, out=t)
    np.subtract(x, t, out=x)


def _softshrink(x, t, lambd):
    # sign(x) * max(|x| - lambd, 0)
    np.abs(x, out=t)
    np.subtract(t, lambd, out=t)
    np.maximum(t, 0, out=t)
    np.sign(x, out=x)
    np.multiply(x, t, out=x)


def _hardshrink(x, t, lambd):
    np.abs(x, out=t)
    np.greater(t, lambd, out=t)
    np.multiply(x, t, out=x)


def _leaky(x, t, negative_slope):
    np.multiply(x, negative_slope, out=t)
    (np.maximum if negative_slope <= 1 else np.minimum)(x, t, out=x)


NUMPY: dict[str, Callable] = {
    "binary_step": lambda x, t: np.greater_equal(x, 0, out=x),
    "sigmoid": _sigmoid,
    "tanh": lambda x, t: np.tanh(x, out=x),
    "relu": lambda x, t: np.maximum(x, 0, out=x),
    "relu6": lambda x, t: np.clip(x, 0, 6, out=x),
    "leaky_relu": _leaky,
    "elu": lambda x, t, alpha: _elu_like(x, t, alpha),
    "selu": lambda x, t: _elu_like(x, t, _SELU_ALPHA, _SELU_SCALE),
    "celu": lambda x, t, alpha: _elu_like(x, t, alpha, 1.0, alpha),
    "gelu": _gelu_tanh,
    "silu": _silu,
    "mish": _mish,
    "softplus": _softplus,
    "softsign": _softsign,
    "hardtanh": lambda x, t, min_val, max_val: np.clip(x, min_val, max_val, out=x),
    "hardsigmoid": _hardsigmoid,
    "hardswish": _hardswish,
    "log_sigmoid": _log_sigmoid,
    "tanhshrink": _tanhshrink,
    "softshrink": _softshrink,
    "hardshrink": _hardshrink,
}
"""Textbook NumPy formula of every registry activation, in place: ``f(x, scratch, **params)``."""

NUMPY_NOTES = {"gelu": "tanh approximation (NumPy has no erf)"}


def numpy_forward(name: str, x: np.ndarray, **params) -> np.ndarray:
    """Out-of-place evaluation of ``NUMPY[name]`` with the registry defaults."""
    import fastact

    act = fastact.ACTIVATIONS[name]
    y = np.array(x, copy=True)
    NUMPY[name](y, np.empty_like(y), **{**act.params, **params})
    return y


# numexpr expressions (``x`` the array, parameters substituted); numexpr has no erf either.
NUMEXPR = {
    "binary_step": "where(x >= 0, 1.0, 0.0)",
    "sigmoid": "1 / (1 + exp(-x))",
    "tanh": "tanh(x)",
    "relu": "where(x > 0, x, 0.0)",
    "relu6": "where(x > 6, 6.0, where(x > 0, x, 0.0))",
    "leaky_relu": "where(x > 0, x, {negative_slope!r} * x)",
    "elu": "where(x > 0, x, {alpha!r} * expm1(x))",
    "selu": f"{_SELU_SCALE!r} * where(x > 0, x, {_SELU_ALPHA!r} * expm1(x))",
    "celu": "where(x > 0, x, {alpha!r} * expm1(x / {alpha!r}))",
    "gelu": f"0.5 * x * (1 + tanh({_GELU_K!r} * (x + 0.044715 * x * x * x)))",
    "silu": "x / (1 + exp(-x))",
    "mish": "x * tanh(log1p(exp(x)))",
    "softplus": "where({beta!r} * x > {threshold!r}, x, log1p(exp({beta!r} * x)) / {beta!r})",
    "softsign": "x / (1 + abs(x))",
    "hardtanh": "where(x < {min_val!r}, {min_val!r}, where(x > {max_val!r}, {max_val!r}, x))",
    "hardsigmoid": "where(x <= -3, 0.0, where(x >= 3, 1.0, x / 6 + 0.5))",
    "hardswish": "where(x <= -3, 0.0, where(x >= 3, x, x * (x + 3) / 6))",
    "log_sigmoid": "where(x < 0, x - log1p(exp(x)), -log1p(exp(-x)))",
    "tanhshrink": "x - tanh(x)",
    "softshrink": "where(x > {lambd!r}, x - {lambd!r}, where(x < -{lambd!r}, x + {lambd!r}, 0.0))",
    "hardshrink": "where(abs(x) > {lambd!r}, x, 0.0)",
}


def _torch_table(torch, params: dict) -> dict[str, tuple[Callable, bool]]:
    """name -> (f(tensor), in place?) with the registry's default parameters."""
    F = torch.nn.functional
    p = params
    aten = torch.ops.aten
    table = {
        "binary_step": (lambda t: torch.ge(t, 0, out=t), True),
        "sigmoid": (torch.sigmoid_, True),
        "tanh": (torch.tanh_, True),
        "relu": (torch.relu_, True),
        "relu6": (lambda t: F.relu6(t, inplace=True), True),
        "leaky_relu": (lambda t: F.leaky_relu_(t, p["leaky_relu"]["negative_slope"]), True),
        "elu": (lambda t: F.elu_(t, p["elu"]["alpha"]), True),
        "selu": (torch.selu_, True),
        "celu": (lambda t: torch.celu_(t, p["celu"]["alpha"]), True),
        "silu": (lambda t: F.silu(t, inplace=True), True),
        "mish": (lambda t: F.mish(t, inplace=True), True),
        "softplus": (lambda t: F.softplus(t, **p["softplus"]), False),
        "softsign": (F.softsign, False),
        "hardtanh": (lambda t: F.hardtanh_(t, **p["hardtanh"]), True),
        "hardsigmoid": (lambda t: F.hardsigmoid(t, inplace=True), True),
        "hardswish": (lambda t: F.hardswish(t, inplace=True), True),
        "log_sigmoid": (F.logsigmoid, False),
        "tanhshrink": (F.tanhshrink, False),
        "softshrink": (lambda t: F.softshrink(t, **p["softshrink"]), False),
        "hardshrink": (lambda t: F.hardshrink(t, **p["hardshrink"]), False),
    }
    gp = p.get("gelu", {"approximate": "none"})
    if hasattr(aten, "gelu_"):
        table["gelu"] = (lambda t: aten.gelu_(t, approximate=gp["approximate"]), True)
    else:
        table["gelu"] = (lambda t: F.gelu(t, approximate=gp["approximate"]), False)
    return table


# ---------------------------------------------------------------------------------------
# Machinery


@dataclass
class Impl:
    act: str  # activation name, or "(floor)"
    kind: str  # "forward" or "backward"
    name: str  # fastact-cpu, floor-parallel, numpy, torch(oop), ...
    call: Callable[[], object]
    prep: Callable[[], None]
    threads: str  # "one" or "all"
    peer: bool = False


def _optional(module: str):
    try:
        return __import__(module, fromlist=["_"])
    except Exception:
        return None


def _floor_kernels():
    from numba import prange

    from ._cpu import jit_kernel

    def mul_(x, c):
        for i in prange(x.size):
            x[i] = x[i] * c

    def mul3_(g, x):
        for i in prange(x.size):
            g[i] = g[i] * x[i]

    return (
        jit_kernel(mul_, "bench_floor_mul_par", True),
        jit_kernel(mul3_, "bench_floor_mul3_par", True),
    )


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(torch=None, ne=None) -> dict:
    import numba

    import fastact

    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = "not initialised"
    info = {
        "cpu": _cpu_name(),
        "cpus": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
        "threading_layer": layer,
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "python": platform.python_version(),
        "fastact": fastact.__version__,
        "numpy": np.__version__,
        "numba": numba.__version__,
    }
    try:
        import llvmlite.binding as ll

        info["llvm_cpu"] = ll.get_host_cpu_name()
    except Exception:  # pragma: no cover
        pass
    scipy = _optional("scipy")
    if scipy is not None:
        info["scipy"] = scipy.__version__
    if ne is not None:
        info["numexpr"] = ne.__version__
        info["numexpr_threads"] = ne.get_num_threads()
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    try:
        import subprocess

        info["git"] = subprocess.run(
            ["git", "log", "-1", "--format=%h"],
            capture_output=True, text=True, timeout=5,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        ).stdout.strip() or None  # fmt: skip
    except Exception:
        info["git"] = None
    return info


def _set_wait_policy() -> None:
    """``OMP_WAIT_POLICY=passive`` unless set, while no OpenMP pool has started yet."""
    if "OMP_WAIT_POLICY" in os.environ:
        return
    import numba

    try:
        numba.threading_layer()
        return  # Numba's pool is running: too late, leave the environment alone
    except ValueError:
        pass
    if "torch" in sys.modules:
        return
    os.environ["OMP_WAIT_POLICY"] = "passive"


class _Progress:
    """A tqdm bar on stderr when tqdm is installed (the ``bench`` extra has it); without it
    the benchmark runs silently."""

    def __init__(self, total: int, enabled: bool):
        tqdm = _optional("tqdm") if enabled else None
        self.bar = None
        if tqdm is not None:
            self.bar = tqdm.tqdm(total=total, unit="call", leave=False, file=sys.stderr)

    def update(self, desc: str = "") -> None:
        if self.bar is not None:
            self.bar.set_description(desc, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _build_impls(acts, dtype, n, bufs, peers, backward: bool) -> list[Impl]:
    xm, gm, x, g, t = bufs
    par_mul, par_mul3 = peers["floor"]
    c = dtype(0.5)

    def prep_x():
        np.copyto(x, xm)

    def prep_gx():
        np.copyto(g, gm)
        np.copyto(x, xm)

    impls = [
        Impl("(floor)", "forward", "floor-cpu", lambda: np.multiply(x, c, out=x), prep_x, "one"),
        Impl("(floor)", "forward", "floor-parallel", lambda: par_mul(x, c), prep_x, "all"),
    ]
    if backward:
        impls += [
            Impl("(floor)", "backward", "floor-cpu",
                 lambda: np.multiply(g, x, out=g), prep_gx, "one"),
            Impl("(floor)", "backward", "floor-parallel", lambda: par_mul3(g, x), prep_gx, "all"),
        ]  # fmt: skip
    torch, ne, sc = peers["torch"], peers["numexpr"], peers["scipy"]
    tx = torch.from_numpy(x) if torch is not None else None
    for act in acts:
        nm, p = act.name, dict(act.params)
        fp = {k: v for k, v in p.items() if k != act.variant}
        for target in ("cpu", "parallel"):
            f_ = act.forward_
            impls.append(Impl(nm, "forward", f"fastact-{target}",
                              lambda f_=f_, tg=target: f_(x, target=tg), prep_x,
                              "one" if target == "cpu" else "all"))  # fmt: skip
        if nm in NUMPY:
            f = NUMPY[nm]
            impls.append(Impl(nm, "forward", "numpy", lambda f=f, fp=fp: f(x, t, **fp),
                              prep_x, "one", peer=True))  # fmt: skip
        if sc is not None:
            scf = {"sigmoid": getattr(sc, "expit", None),
                   "log_sigmoid": getattr(sc, "log_expit", None)}  # fmt: skip
            if p.get("beta") == 1.0 and nm == "softplus":  # SciPy's has no threshold
                scf["softplus"] = getattr(sc, "softplus", None)
            if scf.get(nm) is not None:
                impls.append(Impl(nm, "forward", "scipy", lambda f=scf[nm]: f(x, out=x),
                                  prep_x, "one", peer=True))  # fmt: skip
        if ne is not None and nm in NUMEXPR:
            expr = NUMEXPR[nm].format(**fp)
            impls.append(Impl(nm, "forward", "numexpr",
                              lambda e=expr: ne.evaluate(e, local_dict={"x": x}, out=x,
                                                         casting="same_kind"),
                              prep_x, "all", peer=True))  # fmt: skip
        if torch is not None:
            table = peers["torch_table"]
            if nm in table:
                f, inplace = table[nm]
                impls.append(Impl(nm, "forward", "torch" if inplace else "torch(oop)",
                                  lambda f=f: f(tx), prep_x, "all", peer=True))  # fmt: skip
        if backward:
            for target in ("cpu", "parallel"):
                b = act.backward
                impls.append(Impl(nm, "backward", f"fastact-{target}",
                                  lambda b=b, tg=target: b(g, x, out=g, target=tg), prep_gx,
                                  "one" if target == "cpu" else "all"))  # fmt: skip
    return impls


def _time_cell(impls, repeat, floor_copies, rng, progress, label) -> dict[int, list[float]]:
    times: dict[int, list[float]] = {i: [] for i in range(len(impls))}
    floors = [i for i, im in enumerate(impls) if im.act == "(floor)"]
    order = list(range(len(impls))) + floors * (floor_copies - 1)
    for _ in range(repeat):
        rng.shuffle(order)
        for i in order:
            im = impls[i]
            im.prep()
            t0 = time.perf_counter()
            im.call()
            dt = time.perf_counter() - t0
            times[i].append(dt)
            progress.update(f"{label} {im.act} {im.name}")
    return times


def bench(acts, dtypes, sizes, repeat=None, backward=True, progress=True, seed=0,
          use_peers=True) -> dict:  # fmt: skip
    """Run the benchmark; return ``{"machine": ..., "config": ..., "rows": [...]}``."""
    _set_wait_policy()
    torch = _optional("torch") if use_peers else None
    ne = _optional("numexpr") if use_peers else None
    sc = _optional("scipy.special") if use_peers else None
    import numba

    peers = {"torch": torch, "numexpr": ne, "scipy": sc, "floor": _floor_kernels()}
    if torch is not None:
        peers["torch_table"] = _torch_table(torch, {a.name: a.params for a in acts})
    rng = random.Random(seed)
    rows = []
    cells = []
    for dt_name in dtypes:
        dtype = FLOAT_TYPES[dt_name]
        for n in sizes:
            reps = repeat or (15 if n <= 1_000_000 else 9 if n <= 10_000_000 else 5)
            cells.append((dt_name, dtype, n, reps))
    # count calls for the progress bar
    total = 0
    for _dt, dtype, _n, reps in cells:
        probe = [np.zeros(4, dtype) for _ in range(5)]
        k = len(_build_impls(acts, dtype, 4, probe, peers, backward))
        nf = 4 if backward else 2
        total += reps * (k + nf * 2)
    bar = _Progress(total, progress)
    try:
        for dt_name, dtype, n, reps in cells:
            gen = np.random.default_rng(seed)
            xm = gen.uniform(-6, 6, n).astype(dtype)
            gm = gen.uniform(-1, 1, n).astype(dtype)
            bufs = (xm, gm, np.empty_like(xm), np.empty_like(gm), np.empty_like(xm))
            # warm up (compile) every kernel on a small array, then once at full size
            small = [a[:4096].copy() for a in bufs]
            for im in _build_impls(acts, dtype, 4096, small, peers, backward):
                im.prep()
                im.call()
            impls = _build_impls(acts, dtype, n, bufs, peers, backward)
            if n <= 10_000_000:
                for im in impls:
                    im.prep()
                    im.call()
            times = _time_cell(impls, reps, 3, rng, bar, f"{dt_name} n={n:.0e}")
            rows += _rows(impls, times, dtype, n, dt_name, reps)
    finally:
        bar.close()
    return {
        "machine": machine_info(torch, ne),
        "config": {
            "dtypes": list(dtypes),
            "sizes": list(sizes),
            "repeat": repeat,
            "backward": backward,
            "seed": seed,
            "activations": [a.name for a in acts],
            "numba_threads": numba.get_num_threads(),
            "numpy_notes": {k: v for k, v in NUMPY_NOTES.items() if k in {a.name for a in acts}},
        },  # fmt: skip
        "rows": rows,
    }


def _rows(impls, times, dtype, n, dt_name, reps) -> list[dict]:
    itemsize = np.dtype(dtype).itemsize
    med = {i: float(np.median(v)) for i, v in times.items()}
    floor = {(im.kind, im.name): med[i] for i, im in enumerate(impls) if im.act == "(floor)"}
    best_peer: dict[str, int] = {}  # activation -> index of its fastest peer (by median)
    for i, im in enumerate(impls):
        if im.peer and (im.act not in best_peer or med[i] < med[best_peer[im.act]]):
            best_peer[im.act] = i
    fastest: dict[str, float] = {}  # activation -> median of fastact's faster forward target
    for i, im in enumerate(impls):
        if im.name.startswith("fastact") and im.kind == "forward":
            fastest[im.act] = min(fastest.get(im.act, math.inf), med[i])
    rows = []
    for i, im in enumerate(impls):
        m = med[i]
        streams = 2 if im.kind == "forward" else 3
        fl = floor[(im.kind, "floor-cpu" if im.threads == "one" else "floor-parallel")]
        fa = im.name.startswith("fastact") and im.kind == "forward"
        bp = best_peer.get(im.act) if fa else None
        # each round times every implementation once: the ratio within a round, per round
        paired = [p / f for p, f in zip(times[bp], times[i])] if bp is not None else None
        rows.append({
            "activation": im.act, "pass": im.kind, "impl": im.name,
            "dtype": dt_name, "n": n, "repeats": reps, "samples": len(times[i]),
            "median_ms": m * 1e3, "min_ms": min(times[i]) * 1e3,
            "gbps": streams * n * itemsize / m / 1e9,
            "x_floor": m / fl,
            "x_best_peer": None if bp is None else med[bp] / m,
            "x_best_peer_quartiles": None if bp is None else
                [float(q) for q in np.percentile(paired, [25, 75])],
            # on a peer's row: its time over fastact's faster target (above 1: fastact ahead)
            "x_peer": m / fastest[im.act] if im.peer and im.act in fastest else None,
            "threads": im.threads,
        })  # fmt: skip
    return rows


def _ratio(row: dict) -> str:
    """x best peer, with the quartiles of its per-round values: "1.53 [1.49, 1.57]"."""
    q = row.get("x_best_peer_quartiles")
    tail = f" [{q[0]:.2f}, {q[1]:.2f}]" if q else ""
    return f"{row['x_best_peer']:.2f}{tail}"


def format_table(result: dict) -> str:
    m = result["machine"]
    head = (
        f"fastact {m['fastact']} (git {m.get('git')}), numba {m['numba']}, "
        f"{m['numba_threads']} threads, layer {m['threading_layer']}, CPU {m['cpu']}"
    )
    lines = [head]
    hdr = f"{'activation':<12} {'pass':<8} {'impl':<16} {'ms':>10} {'GB/s':>7} " \
          f"{'x floor':>8} {'fastact ahead x':>23}"  # fmt: skip
    cur = None
    for r in result["rows"]:
        cell = (r["dtype"], r["n"])
        if cell != cur:
            cur = cell
            lines += ["", f"== {r['dtype']}, n = {r['n']:.0e} ({r['repeats']} repeats) ==", hdr]
        bp = _ratio(r) if r["x_best_peer"] is not None else (
            "" if r.get("x_peer") is None else f"{r['x_peer']:.2f}")  # fmt: skip
        lines.append(
            f"{r['activation']:<12} {r['pass']:<8} {r['impl']:<16} {r['median_ms']:>10.3f} "
            f"{r['gbps']:>7.1f} {r['x_floor']:>8.2f} {bp:>23}"
        )
    notes = result["config"].get("numpy_notes") or {}
    lines += ["", "fastact ahead x: on fastact's rows, the best peer's median time over its own "
              "[quartiles of the same ratio round by round]; on a peer's rows, that peer's "
              "time over fastact's faster target."]
    if notes:
        lines += ["numpy: " + "; ".join(f"{k}: {v}" for k, v in notes.items())]
    return "\n".join(lines)


def format_markdown(result: dict, command: str) -> str:
    """The README's form: per (dtype, n) a summary table of the ratios (fastact parallel and
    one thread against the floor, against the best peer, backward against its floor), a
    footnote with the machine, versions and command, and the full grid folded below."""
    m = result["machine"]
    out = []
    cells: dict = {}
    for r in result["rows"]:
        cells.setdefault((r["dtype"], r["n"]), {})[(r["activation"], r["pass"], r["impl"])] = r
    for (dt, n), by in cells.items():
        acts = list(dict.fromkeys(a for a, _, _ in by if not a.startswith("(")))
        out += [f"**{dt}, n = {n:.0e}**", "",
                "| activation | parallel ms | x floor (parallel) | x floor (one thread) "
                "| best peer | x best peer | backward x floor (parallel) |",
                "|---|---|---|---|---|---|---|"]  # fmt: skip
        for a in acts:
            par = by[(a, "forward", "fastact-parallel")]
            one = by[(a, "forward", "fastact-cpu")]
            bwd = by.get((a, "backward", "fastact-parallel"))
            peers = [r for (b, p, _), r in by.items() if b == a and p == "forward"
                     and not r["impl"].startswith("fastact")]  # fmt: skip
            best = min(peers, key=lambda r: r["median_ms"], default=None)
            fast = par if par["median_ms"] <= one["median_ms"] else one
            vs = f"{best['impl']} | {_ratio(fast)}" if best else "- | -"
            bw = f"{bwd['x_floor']:.2f}" if bwd else "-"
            out.append(f"| {a} | {par['median_ms']:.3g} | {par['x_floor']:.2f} "
                       f"| {one['x_floor']:.2f} | {vs} | {bw} |")  # fmt: skip
        fl = {r["impl"]: r for (a, p, _), r in by.items() if a == "(floor)" and p == "forward"}
        nan = {"median_ms": math.nan, "min_ms": math.nan}
        par_fl, one_fl = fl.get("floor-parallel", nan), fl.get("floor-cpu", nan)
        out += ["", f"Floor (in-place multiply, same threads, same run): "
                f"{par_fl['median_ms']:.2f} ms parallel (fastest pass {par_fl['min_ms']:.2f} ms), "
                f"{one_fl['median_ms']:.2f} ms one thread (fastest {one_fl['min_ms']:.2f} ms); a "
                "fastest pass far below the median means the memory bandwidth changed during "
                "the run, and so may every ratio to the floor. \"x best peer\" is the "
                "fastest peer's median time over fastact's faster target (above 1: fastact is "
                "ahead); in brackets the middle half of the same ratio taken round by round "
                "(each round times every implementation once, in shuffled order): a range "
                "that contains 1 is a tie within this machine's noise.",
                ""]  # fmt: skip
    out += [f"<sub>Measured with `{command}`: fastact {m['fastact']} (git {m.get('git')}), "
            f"NumPy {m.get('numpy')}, Numba {m.get('numba')}, SciPy {m.get('scipy', '-')}, "
            f"numexpr {m.get('numexpr', '-')}, PyTorch {m.get('torch', '-')}; "
            f"{m['numba_threads']} threads ({m['threading_layer']}), CPU {m['cpu']}.</sub>",
            "", "<details><summary>The full grid</summary>", "", "```",
            format_table(result), "```", "", "</details>"]  # fmt: skip
    return "\n".join(out)


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r["impl"].startswith("fastact")]
    cells = sorted({(r["dtype"], r["n"]) for r in rows})
    fig, axes = plt.subplots(len(cells), 2, figsize=(14, 3.5 * len(cells)), squeeze=False)
    for (dt, n), (ax_f, ax_p) in zip(cells, axes, strict=True):
        sel = [r for r in rows if (r["dtype"], r["n"]) == (dt, n)]
        labels = sorted({(r["activation"], r["pass"]) for r in sel})
        idx = {lab: i for i, lab in enumerate(labels)}
        for k, impl in enumerate(("fastact-cpu", "fastact-parallel")):
            for ax, key in ((ax_f, "x_floor"), (ax_p, "x_best_peer")):
                xs, ys = [], []
                for r in sel:
                    if r["impl"] == impl and r[key] is not None:
                        xs.append(idx[(r["activation"], r["pass"])] + (k - 0.5) * 0.4)
                        ys.append(r[key])
                ax.bar(xs, ys, width=0.4, label=impl)
        for ax, title in ((ax_f, "x floor (lower is better)"),
                          (ax_p, "x best peer (higher is better)")):  # fmt: skip
            ax.axhline(1.0, color="k", lw=0.8)
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels([a if p == "forward" else a + "'" for a, p in labels],
                               rotation=70, fontsize=7)  # fmt: skip
            ax.set_title(f"{dt}, n={n:.0e}: {title}")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------------------
# Command line


def _sizes(text: str) -> list[int]:
    try:
        out = [int(float(s)) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(f"bench: --sizes must be numbers like 1e6,1e8, got {text!r}") from None
    if not out or min(out) < 1:
        raise SystemExit(f"bench: --sizes must be positive, got {text!r}")
    return out


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="time fastact against the memory floor and NumPy/SciPy/numexpr/PyTorch",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--only", help="comma-separated activations (default: all)")
    p.add_argument("--sizes", default=None, help="element counts, default 1e6,1e8")
    p.add_argument("--dtypes", default="float32", help="float32,float64 (default float32)")
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="repeats per cell (default 15 up to 1e6, 9 up to 1e7, 5 above)",
    )
    p.add_argument("--quick", action="store_true", help=f"< 2 minutes: {QUICK}")
    p.add_argument("--no-backward", action="store_true", help="forward only")
    p.add_argument("--no-peers", action="store_true", help="fastact and the floor only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE", help="write all medians, ratios, machine info")
    p.add_argument("--plot", metavar="FILE.png", help="bar chart (needs matplotlib)")
    p.add_argument("--markdown", metavar="FILE.md", help="the README's summary table")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    import fastact

    if args.plot and _optional("matplotlib") is None:
        print("bench: --plot needs matplotlib, which is not installed "
              "(pip install matplotlib), or drop --plot", file=sys.stderr)  # fmt: skip
        return 2
    try:
        names = select_names(args.only)
    except ValueError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    dtypes = [s.strip() for s in args.dtypes.split(",") if s.strip()]
    bad = [d for d in dtypes if d not in FLOAT_TYPES]
    if bad:
        print(f"bench: unknown dtype(s) {', '.join(bad)}; use float32,float64", file=sys.stderr)
        return 2
    if args.quick:
        sizes = _sizes(args.sizes or "1e6")
        repeat = args.repeat or 5
    else:
        sizes = _sizes(args.sizes or "1e6,1e8")
        repeat = args.repeat
    acts = [fastact.ACTIVATIONS[s] for s in names]
    t0 = time.perf_counter()
    result = bench(acts, dtypes, sizes, repeat=repeat, backward=not args.no_backward,
                   progress=not args.no_progress and sys.stderr.isatty() or False,
                   seed=args.seed, use_peers=not args.no_peers)  # fmt: skip
    result["wall_s"] = time.perf_counter() - t0
    print(format_table(result))
    print(f"\nwall time {result['wall_s']:.1f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    if args.plot:
        plot(result, args.plot)
    if args.markdown:
        cmd = "python -m fastact " + " ".join(sys.argv[1:])
        with open(args.markdown, "w") as fh:
            fh.write(format_markdown(result, cmd) + "\n")
    return 0
