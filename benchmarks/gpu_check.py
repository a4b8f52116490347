"""One short check for a machine with an NVIDIA GPU (not an asv benchmark; runs in minutes).

    python benchmarks/gpu_check.py [--n 134217728] [--repeat 20] [--quick]

1. Correctness: every activation (both gelu forms) × forward, in place, grad, backward from
   x and from y × float32/float64 on the device, against the CPU result (max ULP apart),
   plus zero-copy calls on CuPy arrays and torch CUDA tensors where installed.
2. Bandwidth of the in-place forward on ``--n`` float32 elements (and the in-place backward,
   grad *= f'(x)), next to a device-to-device copy, a numba in-place ``x *= 2``, CuPy's
   ElementwiseKernel of the same formula and torch's CUDA function, where installed.
3. The non-elementwise activations (softmax, log_softmax and their backward passes, maxout,
   prelu) against the CPU on a few shapes and axes, and the bandwidth of softmax_, maxout,
   prelu_ and prelu_backward on ``--n`` float32 elements next to the copy.
Prints the tables; exits 1 if a correctness check fails.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

# CuPy ElementwiseKernel bodies (in place: x = f(x)), the plain C formulas.
CUPY_EXPR = {
    "binary_step": "x = x >= (T)0 ? (T)1 : (T)0",
    "sigmoid": "x = (T)1 / ((T)1 + exp(-x))",
    "tanh": "x = tanh(x)",
    "relu": "x = x > (T)0 ? x : (T)0",
    "relu6": "x = min(max(x, (T)0), (T)6)",
    "leaky_relu": "x = x > (T)0 ? x : (T)0.01 * x",
    "elu": "x = x > (T)0 ? x : expm1(x)",
    "selu": "x = x > (T)0 ? (T)1.0507009873554805 * x : (T)1.7580993408473766 * expm1(x)",
    "celu": "x = x > (T)0 ? x : expm1(x)",
    "gelu-none": "x = (T)0.5 * x * erfc(-x * (T)0.7071067811865476)",
    "gelu-tanh": "x = (T)0.5 * x * ((T)1 + tanh((T)0.7978845608028654 * "
    "(x + (T)0.044715 * x * x * x)))",
    "silu": "x = x / ((T)1 + exp(-x))",
    "mish": "x = x * tanh(log1p(exp(x)))",
    "softplus": "x = x > (T)20 ? x : log1p(exp(x))",
    "softsign": "x = x / ((T)1 + fabs(x))",
    "hardtanh": "x = min(max(x, (T)-1), (T)1)",
    "hardsigmoid": "x = min(max(x + (T)3, (T)0), (T)6) / (T)6",
    "hardswish": "x = x * min(max(x + (T)3, (T)0), (T)6) / (T)6",
    "log_sigmoid": "x = min(x, (T)0) - log1p(exp(-fabs(x)))",
    "tanhshrink": "x = x - tanh(x)",
    "softshrink": "x = x > (T)0.5 ? x - (T)0.5 : (x < (T)-0.5 ? x + (T)0.5 : (T)0)",
    "hardshrink": "x = fabs(x) > (T)0.5 ? x : (T)0",
}


def _torch_fn(name):
    """(callable on a tensor, in place?) for torch's equivalent, or None."""
    import torch
    import torch.nn.functional as F

    table = {
        "binary_step": (
            lambda t: torch.heaviside(t, torch.ones((), device=t.device, dtype=t.dtype)),
            False,
        ),
        "sigmoid": (torch.sigmoid_, True),
        "tanh": (torch.tanh_, True),
        "relu": (torch.relu_, True),
        "relu6": (lambda t: F.relu6(t, inplace=True), True),
        "leaky_relu": (F.leaky_relu_, True),
        "elu": (F.elu_, True),
        "selu": (lambda t: F.selu(t, inplace=True), True),
        "celu": (F.celu_, True),
        "gelu-none": (F.gelu, False),
        "gelu-tanh": (lambda t: F.gelu(t, approximate="tanh"), False),
        "silu": (lambda t: F.silu(t, inplace=True), True),
        "mish": (lambda t: F.mish(t, inplace=True), True),
        "softplus": (F.softplus, False),
        "softsign": (F.softsign, False),
        "hardtanh": (F.hardtanh_, True),
        "hardsigmoid": (lambda t: F.hardsigmoid(t, inplace=True), True),
        "hardswish": (lambda t: F.hardswish(t, inplace=True), True),
        "log_sigmoid": (F.logsigmoid, False),
        "tanhshrink": (F.tanhshrink, False),
        "softshrink": (F.softshrink, False),
        "hardshrink": (F.hardshrink, False),
    }
    return table.get(name)


def variants():
    import fastact

    for act in fastact.ACTIVATIONS.values():
        if act.variant:
            for v in act.variants:
                yield f"{act.name}-{v}", act, {act.variant: v}
        else:
            yield act.name, act, {}


def sample(dtype, n=1 << 16, seed=0):
    """Special values, kinks, subnormals, and a log-uniform spread over the finite range."""
    rng = np.random.default_rng(seed)
    fi = np.finfo(dtype)
    sub = fi.smallest_subnormal
    special = [np.nan, np.inf, -np.inf, 0.0, -0.0, sub, -sub, fi.tiny, -fi.tiny,
               0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 6.0, 20.0, -20.0, 30.0, -30.0]  # fmt: skip
    mag = np.exp(rng.uniform(np.log(float(fi.tiny)), np.log(200.0), n // 2))
    lin = rng.uniform(-12, 12, n - n // 2 - len(special))
    x = np.concatenate([special, mag * rng.choice([-1, 1], mag.size), lin]).astype(dtype)
    return x


def ulp_diff(a, b, dtype):
    """Elementwise distance in units in the last place (NaN == NaN, ±0 equal)."""
    it = np.int32 if dtype == np.float32 else np.int64
    a, b = np.asarray(a, dtype), np.asarray(b, dtype)

    def key(v):
        i = v.view(it).astype(np.int64)
        return np.where(i < 0, np.iinfo(it).min - i, i)

    d = np.abs(key(a) - key(b)).astype(np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    d[both_nan] = 0
    d[np.isnan(a) ^ np.isnan(b)] = np.inf
    return d


def _cases(act, kw, x, g):
    """{function: (on the GPU, on the CPU)} for one activation and dtype."""
    from numba import cuda

    cpu = dict(kw, target="cpu")
    dev = cuda.to_device
    cases = {
        "forward": (lambda: act.forward(dev(x), **kw).copy_to_host(),
                    lambda: act.forward(x, **cpu)),
        "forward_": (lambda: _inplace(act, x, kw), lambda: act.forward(x, **cpu)),
        "grad": (lambda: act.grad(dev(x), **kw).copy_to_host(), lambda: act.grad(x, **cpu)),
        "backward_x": (lambda: act.backward(dev(g), dev(x), **kw).copy_to_host(),
                       lambda: act.backward(g, x, **cpu)),
    }  # fmt: skip
    if act.from_output:
        y = act.forward(x, **cpu)
        cases["backward_y"] = (
            lambda: act.backward(dev(g), y=dev(y), **kw).copy_to_host(),
            lambda: act.backward(g, y=y, **cpu),
        )
    return cases


def _verdict(name, fname, x, g, got, ref, dt):
    """(max ULP apart outside the allowances, ok?). GPU and CPU are each within 4 ULP of the
    truth, so 8 apart; near zeros of f' 8 eps·|grad| absolute; gelu-tanh 1e-4 (float32) /
    1e-12 (float64) relative beyond |x| = 2 (SPEC §4)."""
    d = ulp_diff(got, ref, dt)
    with np.errstate(invalid="ignore"):
        err = np.abs(got.astype(np.float64) - ref)
    scale = np.abs(g) if fname.startswith("backward") else 1.0
    allowed = err <= 8 * np.finfo(dt).eps * scale * ((np.abs(x) >= 0.5) & (np.abs(x) <= 2))
    if name == "gelu-tanh":
        rel = err / np.maximum(np.abs(ref.astype(np.float64)), 1e-300)
        allowed |= (np.abs(x) > 2) & (rel <= (1e-4 if dt == np.float32 else 1e-12))
    d = np.where(allowed, 0, d)
    worst = float(d.max()) if d.size else 0.0
    return worst, worst <= 8


def check_correctness(quick: bool, n: int = 1 << 16) -> list[tuple]:
    rows = []
    dtypes = (np.float32,) if quick else (np.float32, np.float64)
    for name, act, kw in variants():
        for dt in dtypes:
            x = sample(dt, n)
            g = np.random.default_rng(1).uniform(-2, 2, x.size).astype(dt)
            for fname, (gpu_f, cpu_f) in _cases(act, kw, x, g).items():
                try:
                    worst, ok = _verdict(name, fname, x, g, gpu_f(), cpu_f(), dt)
                    rows.append((name, fname, np.dtype(dt).name, worst, "ok" if ok else "FAIL"))
                except Exception as e:  # report every broken case, not just the first
                    rows.append((name, fname, np.dtype(dt).name, np.nan, f"ERROR {e!r}"[:80]))
    rows += _interop()
    rows += check_nonelementwise(quick)
    return rows


def _inplace(act, x, kw):
    from numba import cuda

    d = cuda.to_device(x)
    act.forward_(d, **kw)
    return d.copy_to_host()


def _interop() -> list[tuple]:
    """Zero-copy calls on CuPy arrays and torch tensors: result type and values."""
    import fastact

    rows = []
    x = sample(np.float32, 4096)
    ref = fastact.sigmoid(x, target="cpu")
    try:
        import cupy
    except ImportError:
        rows.append(("interop", "cupy", "float32", float("nan"), "skipped: no cupy"))
    else:
        a = cupy.asarray(x)
        r = fastact.sigmoid(a)
        ok = isinstance(r, cupy.ndarray) and ulp_diff(cupy.asnumpy(r), ref, np.float32).max() <= 8
        ptr = a.data.ptr
        fastact.sigmoid_(a)
        ok = ok and a.data.ptr == ptr and ulp_diff(cupy.asnumpy(a), ref, np.float32).max() <= 8
        rows.append(("interop", "cupy", "float32", 0.0, "ok" if ok else "FAIL"))
    try:
        import torch

        if not torch.cuda.is_available():
            raise ImportError
    except ImportError:
        rows.append(("interop", "torch", "float32", float("nan"), "skipped: no torch CUDA"))
    else:
        t = torch.as_tensor(x, device="cuda")
        r = fastact.sigmoid(t)
        ok = isinstance(r, torch.Tensor) and r.is_cuda
        ok = ok and ulp_diff(r.cpu().numpy(), ref, np.float32).max() <= 8
        fastact.sigmoid_(t)
        ok = ok and ulp_diff(t.cpu().numpy(), ref, np.float32).max() <= 8
        rows.append(("interop", "torch", "float32", 0.0, "ok" if ok else "FAIL"))
    return rows


# ------------------------------------------------------------------ non-elementwise

# (shape, axis): long rows (a block per row), short rows (a warp per row), a middle axis
# (one thread per row), a strided view's axis 0 (segments over a strided axis).
NE_SHAPES = [((256, 1000), -1), ((512, 10), -1), ((64, 33, 20), 1), ((33, 7), 0)]


def _eps_err(got, ref, dt, scale=0.0) -> float:
    """max |got - ref| in units of eps·(|ref| + scale) (NaN where both are NaN: 0)."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    with np.errstate(invalid="ignore"):
        d = np.abs(got - ref) / (np.finfo(dt).eps * (np.abs(ref) + scale) + 1e-300)
        d[(got == ref) | (np.isnan(got) & np.isnan(ref))] = 0
    d[np.isnan(d)] = np.inf
    return float(d.max()) if d.size else 0.0


def _ne_row(name, tag, dt, gpu, cpu, scales=(0.0, 0.0), limit=0.0) -> tuple:
    """One correctness row: ``gpu()`` (device arrays, or a tuple of them) vs ``cpu()``."""
    try:
        got, ref = gpu(), cpu()
        if not isinstance(got, tuple):
            got, ref = (got,), (ref,)
        # each result within ``limit`` eps of (|ref| + its scale)
        worst = max(
            _eps_err(a.copy_to_host(), r, dt, sc)
            for a, r, sc in zip(got, ref, scales[: len(got)], strict=True)
        )
        status = "ok" if worst <= limit else "FAIL"
    except Exception as e:  # report every broken case
        worst, status = np.nan, f"ERROR {e!r}"[:80]
    return (name, tag, np.dtype(dt).name, worst, status)


def check_nonelementwise(quick: bool) -> list[tuple]:
    """Device vs CPU: softmax family within 64 eps of |ref| plus the scale of what cancels
    (log-softmax: |x - max|; the backward passes: n·max|g|; exp differs by an ULP or two and
    sums run in another order), maxout and prelu exactly, prelu's weight gradient within
    64 eps of Σ|x·g| (atomics, any order)."""
    from functools import partial as P

    from numba import cuda

    import fastact

    dev = cuda.to_device
    rows = []
    for dt in (np.float32,) if quick else (np.float32, np.float64):
        rng = np.random.default_rng(2)
        for shape, ax in NE_SHAPES:
            x = (4 * rng.standard_normal(shape)).astype(dt)
            x.reshape(-1)[5::97] = np.nan  # NaN rows
            g = rng.standard_normal(shape).astype(dt)
            tag = f"{'x'.join(map(str, shape))}/{ax}"
            for op in ("softmax", "log_softmax"):
                f, b = getattr(fastact, op), getattr(fastact, op + "_backward")
                y = f(x, axis=ax, target="cpu")
                yf = np.nan_to_num(y)
                fwd_sc = float(np.abs(yf).max()) if op == "log_softmax" else 0.0
                sc = float(np.abs(g).max() * shape[ax])
                rows.append(
                    _ne_row(
                        op,
                        tag,
                        dt,
                        P(f, dev(x), axis=ax),
                        P(f, x, axis=ax, target="cpu"),
                        scales=(fwd_sc,),
                        limit=64,
                    )
                )
                ref = P(b, g, yf, axis=ax, target="cpu")
                rows.append(
                    _ne_row(
                        op + "_backward",
                        tag,
                        dt,
                        P(b, dev(g), dev(yf), axis=ax),
                        ref,
                        limit=64,
                        scales=(sc,),
                    )
                )
            k = 2 if shape[ax] % 2 == 0 else 5 if shape[ax] % 5 == 0 else 1
            gm = rng.standard_normal(fastact.maxout(x, k, axis=ax, target="cpu").shape).astype(dt)
            rows.append(
                _ne_row(
                    "maxout",
                    tag,
                    dt,
                    P(fastact.maxout, dev(x), k, axis=ax),
                    P(fastact.maxout, x, k, axis=ax, target="cpu"),
                )
            )
            rows.append(
                _ne_row(
                    "maxout_backward",
                    tag,
                    dt,
                    P(fastact.maxout_backward, dev(gm), dev(x), k, axis=ax),
                    P(fastact.maxout_backward, gm, x, k, axis=ax, target="cpu"),
                )
            )
            w = np.linspace(0, 0.5, x.shape[1]).astype(dt)
            rows.append(
                _ne_row(
                    "prelu",
                    tag,
                    dt,
                    P(fastact.prelu, dev(x), dev(w)),
                    P(fastact.prelu, x, w, target="cpu"),
                )
            )
            sw = float(np.nansum(np.abs(np.where(x > 0, 0, x * g))))
            rows.append(
                _ne_row(
                    "prelu_backward",
                    tag,
                    dt,
                    P(fastact.prelu_backward, dev(g), dev(x), dev(w)),
                    P(fastact.prelu_backward, g, x, w, target="cpu"),
                    scales=(0.0, sw),
                    limit=64,
                )
            )
    return rows


def bandwidth_nonelementwise(n: int, repeat: int, copy_bw: float) -> list[tuple]:
    """(name, bytes per call / s, share of copy) for softmax_, log_softmax_ (rows of 4096
    along the last axis), maxout (4 pieces), prelu_ and prelu_backward (NCHW, 64 channels).
    Bytes are the floor: each input read once, each output written once."""
    from numba import cuda

    import fastact

    dt = np.float32
    it = np.dtype(dt).itemsize
    n = n // (64 * 4096) * (64 * 4096)
    x = cuda.to_device(np.random.default_rng(0).uniform(-4, 4, n).astype(dt))
    g = cuda.to_device(np.ones(n, dt))
    rows2 = x.reshape(n // 4096, 4096)
    cols2 = x.reshape(4096, n // 4096)  # C order: one thread per column
    nchw = x.reshape(n // (64 * 4096), 64, 64, 64)
    gnchw = g.reshape(nchw.shape)
    w = cuda.to_device(np.linspace(0, 0.5, 64).astype(dt))
    mo = cuda.device_array((n // 4096, 1024), dtype=dt)
    res = []
    cases = [
        ("softmax_ (rows of 4096)", 2 * n * it, lambda: fastact.softmax_(rows2)),
        ("log_softmax_ (rows of 4096)", 2 * n * it, lambda: fastact.log_softmax_(rows2)),
        ("softmax_ (axis 0 of 4096 x m)", 2 * n * it, lambda: fastact.softmax_(cols2, axis=0)),
        ("maxout 4 pieces", n * it + n // 4 * it, lambda: fastact.maxout(rows2, 4, out=mo)),
        ("prelu_ (NCHW, 64 ch)", 2 * n * it, lambda: fastact.prelu_(nchw, w)),
        ("prelu_backward (NCHW)", 3 * n * it,
         lambda: fastact.prelu_backward(gnchw, nchw, w, out=gnchw)),
    ]  # fmt: skip
    for name, nbytes, fn in cases:
        try:
            bw = nbytes / _time(fn, repeat)
            res.append((name, bw, bw / copy_bw))
        except Exception as e:  # report, keep going
            res.append((f"{name}: ERROR {e!r}"[:80], float("nan"), float("nan")))
    return res


# ------------------------------------------------------------------ bandwidth


def _time(fn, repeat: int, rounds: int = 3) -> float:
    """Seconds per call: ``repeat`` back-to-back calls between two CUDA events (so launch
    overhead overlaps the previous kernel), best of ``rounds``."""
    from numba import cuda

    fn()  # warm up (compiles)
    cuda.synchronize()
    best = []
    for _ in range(rounds):
        s, e = cuda.event(), cuda.event()
        s.record()
        for _ in range(repeat):
            fn()
        e.record()
        e.synchronize()
        best.append(cuda.event_elapsed_time(s, e) / 1e3 / repeat)
    return min(best)


def bandwidth(n: int, repeat: int) -> tuple[dict, list[tuple]]:
    from numba import cuda

    dt = np.float32
    nbytes = n * np.dtype(dt).itemsize
    x = cuda.to_device(np.random.default_rng(0).uniform(-4, 4, n).astype(dt))
    g = cuda.to_device(np.ones(n, dt))
    y = cuda.device_array_like(x)

    @cuda.jit
    def scale(a):
        for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
            a[i] = a[i] * np.float32(1.0000001)

    from fastact import _cuda

    blocks, threads = _cuda.launch_config(n)
    base = {
        "copy (D2D)": 2 * nbytes / _time(lambda: y.copy_to_device(x), repeat),
        "numba x *= c": 2 * nbytes / _time(lambda: scale[blocks, threads](x), repeat),
    }
    cp = th = None
    try:
        import cupy

        cx = cupy.asarray(x)  # zero-copy views of the same buffer
        base["cupy x *= c"] = 2 * nbytes / _time(lambda: cx.__imul__(np.float32(1.0000001)), repeat)
        cp = cupy
    except ImportError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            tx = torch.as_tensor(x, device="cuda")
            base["torch x.mul_(c)"] = 2 * nbytes / _time(lambda: tx.mul_(1.0000001), repeat)
            th = torch
    except ImportError:
        pass

    rows = []
    copy_bw = base["copy (D2D)"]
    for name, act, kw in variants():
        x.copy_to_device(np.random.default_rng(0).uniform(-4, 4, n).astype(dt))
        fwd = 2 * nbytes / _time(lambda act=act, kw=kw: act.forward_(x, **kw), repeat)
        bwd = 3 * nbytes / _time(lambda act=act, kw=kw: act.backward(g, x, out=g, **kw), repeat)
        g.copy_to_device(np.ones(n, dt))
        cupy_bw = torch_bw = float("nan")
        torch_note = ""
        if cp is not None:
            k = cp.ElementwiseKernel("", "T x", CUPY_EXPR[name], f"fa_{name.replace('-', '_')}")
            cupy_bw = 2 * nbytes / _time(lambda k=k: k(cx), repeat)
        if th is not None:
            f, inplace = _torch_fn(name)
            torch_bw = 2 * nbytes / _time(lambda f=f: f(tx), repeat)
            torch_note = "" if inplace else " (out of place)"
        rows.append((name, fwd, fwd / copy_bw, bwd, bwd / copy_bw, cupy_bw, torch_bw, torch_note))
    return base, rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1 << 27, help="elements for bandwidth (float32)")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="float32 only in the correctness part")
    ap.add_argument("--skip-bandwidth", action="store_true")
    args = ap.parse_args(argv)

    from numba import cuda

    import fastact
    from fastact import _cuda

    if not _cuda.available() or _cuda.simulator():
        print("no usable GPU (or the simulator is on): nothing to check", file=sys.stderr)
        return 2
    dev = cuda.get_current_device()
    gpu = dev.name.decode() if isinstance(dev.name, bytes) else dev.name
    print(f"fastact {fastact.__version__} on {gpu}, "
          f"cc {dev.compute_capability}, {dev.MULTIPROCESSOR_COUNT} SMs; "
          f"launch {_cuda.launch_config(args.n)} for n={args.n}")  # fmt: skip

    t0 = time.perf_counter()
    rows = check_correctness(args.quick)
    print(f"\n## Correctness vs the CPU ({time.perf_counter() - t0:.0f} s)\n")
    print(f"| {'activation':<12} | {'function':<10} | {'dtype':<7} | {'max ULP':>8} | status |")
    print("|---|---|---|---:|---|")
    failed = 0
    for name, fname, dt, worst, status in rows:
        failed += status.startswith(("FAIL", "ERROR"))
        print(f"| {name:<12} | {fname:<10} | {dt:<7} | {worst:>8.1f} | {status} |")
    print(f"\n{len(rows) - failed}/{len(rows)} checks passed")

    if not args.skip_bandwidth:
        t0 = time.perf_counter()
        base, brows = bandwidth(args.n, args.repeat)
        print(
            f"\n## In-place bandwidth, float32, n = {args.n} ({time.perf_counter() - t0:.0f} s)\n"
        )
        for k, v in base.items():
            print(f"- {k}: {v / 1e9:.0f} GB/s")
        print("\n| activation | fastact f_ GB/s | % copy | fastact backward GB/s | % copy | "
              "CuPy kernel GB/s | torch GB/s |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|---|")
        for name, fwd, rf, bwd, rb, cupy_bw, torch_bw, note in brows:
            cols = [f"{fwd / 1e9:.0f}", f"{100 * rf:.0f}%", f"{bwd / 1e9:.0f}", f"{100 * rb:.0f}%",
                    f"{cupy_bw / 1e9:.0f}", f"{torch_bw / 1e9:.0f}{note}"]  # fmt: skip
            print(f"| {name} | " + " | ".join(cols) + " |")
        print("\n(bytes moved: 2n·4 for f_ and x *= c and copies, 3n·4 for backward; "
              "SPEC §5 asks for >= 85% of copy)")  # fmt: skip
        nrows = bandwidth_nonelementwise(args.n, args.repeat, base["copy (D2D)"])
        print("\n## Non-elementwise, float32 (bytes: each input read once, output written once)\n")
        print("| function | GB/s | % copy |\n|---|---:|---:|")
        for name, bw, share in nrows:
            print(f"| {name} | {bw / 1e9:.0f} | {100 * share:.0f}% |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
