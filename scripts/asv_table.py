#!/usr/bin/env python
"""Turn asv results into the README's ratio table (Markdown).

    python scripts/asv_table.py                      # newest result under .asv/results
    python scripts/asv_table.py .asv/results/box/abc123-existing-py.json --full
    python scripts/asv_table.py -b bench_activations.Backward.time_backward --n 1e4

For a benchmark parametrised ``[activation, impl, n, dtype]`` it prints, per activation, the
time of fastact's CPU targets and each peer's speed-up ratio: the peer's time over the best
fastact CPU time (``10.0x`` = fastact is ten times faster; ``—`` = the cell did not run). The
summary is one (n, dtype); ``--full`` folds every other one below it in ``<details>``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import pathlib
import sys

DEFAULT = "bench_activations.Forward.time_forward_"
FASTACT_CPU = ("fastact-cpu", "fastact-parallel")


def newest_result(root: pathlib.Path) -> pathlib.Path:
    files = [p for p in root.glob("*/*.json") if p.name not in ("machine.json", "benchmarks.json")]
    if not files:
        sys.exit(f"no asv results under {root}: run `asv run` first")
    return max(files, key=lambda p: p.stat().st_mtime)


def load(path: pathlib.Path, bench: str):
    """``({param tuple: value}, param names' values, the file's header)``."""
    doc = json.loads(path.read_text())
    cols = doc.get("result_columns", ["result", "params"])
    if bench not in doc.get("results", {}):
        known = ", ".join(sorted(doc.get("results", {}))) or "none"
        sys.exit(f"{path}: no results for {bench} (has: {known})")
    row = doc["results"][bench]
    values, params = row[cols.index("result")], row[cols.index("params")]
    params = [[_unquote(v) for v in p] for p in params]
    cells = dict(zip(itertools.product(*params), values or [], strict=False))
    return cells, params, doc


def _unquote(v: str) -> str:
    return v[1:-1] if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"" else v


def _ok(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def fmt_time(t) -> str:
    if not _ok(t):
        return "—"
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if t >= scale:
            return f"{t / scale:.3g} {unit}"
    return f"{t / 1e-9:.3g} ns"


def table(cells, params, n: str, dtype: str) -> str:
    activations, impls = params[0], params[1]
    ours = [i for i in FASTACT_CPU if i in impls]
    cuda = "fastact-cuda" in impls and any(
        _ok(cells.get((a, "fastact-cuda", n, dtype))) for a in activations
    )
    peers = [i for i in impls if not i.startswith("fastact-")]
    head = ["activation", *ours, *(["fastact-cuda"] if cuda else []), *[f"{p} ×" for p in peers]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a in activations:
        t_ours = [cells.get((a, i, n, dtype)) for i in ours]
        best = min((t for t in t_ours if _ok(t)), default=None)
        row = [a, *(fmt_time(t) for t in t_ours)]
        if cuda:
            row.append(fmt_time(cells.get((a, "fastact-cuda", n, dtype))))
        for p in peers:
            t = cells.get((a, p, n, dtype))
            row.append(f"{t / best:.1f}x" if _ok(t) and best else "—")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="?", default=".asv/results",
                    help="an asv result JSON, or a results folder (newest file)")  # fmt: skip
    ap.add_argument("-b", "--benchmark", default=DEFAULT)
    ap.add_argument("--n", help="size label of the summary (default: the largest)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--full", action="store_true", help="fold every (n, dtype) below")
    args = ap.parse_args(argv)

    path = pathlib.Path(args.results)
    if path.is_dir():
        path = newest_result(path)
    cells, params, doc = load(path, args.benchmark)
    if len(params) != 4:
        sys.exit(f"{args.benchmark} is not parametrised [activation, impl, n, dtype]")
    sizes, dtypes = params[2], params[3]
    n = args.n or max(sizes, key=lambda s: float(s))
    dtype = args.dtype if args.dtype in dtypes else dtypes[0]
    machine = doc.get("params", {})
    print(
        f"{args.benchmark}, n = {n}, {dtype}; machine {machine.get('machine', '?')} "
        f"({machine.get('cpu', '?')}, {machine.get('num_cpu', '?')} CPUs), "
        f"commit {str(doc.get('commit_hash', '?'))[:8]}. Peer columns: the peer's time over "
        "the best fastact CPU time (higher = fastact faster).\n"
    )
    print(table(cells, params, n, dtype))
    if args.full:
        print("\n<details><summary>Full grid</summary>\n")
        for s, d in itertools.product(sizes, dtypes):
            if (s, d) != (n, dtype):
                print(f"\nn = {s}, {d}\n")
                print(table(cells, params, s, d))
        print("\n</details>")
    return 0


if __name__ == "__main__":
    sys.exit(main())
