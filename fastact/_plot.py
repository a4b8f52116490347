"""``python -m fastact plot``: a gallery of the activations, one panel each, f and f' over
[-5, 5], computed by fastact itself (needs matplotlib)."""

from __future__ import annotations

import math
import sys

import numpy as np

from ._registry import select_names

LO, HI = -5.0, 5.0


def gallery(names: list[str], path: str, n: int = 1001, dpi: int = 110) -> None:
    """Draw f (solid) and f' (dashed) of each activation in ``names`` into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import fastact

    x = np.linspace(LO, HI, n)
    cols = min(len(names), 6)
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.3 * cols, 2.0 * rows), sharex=True, squeeze=False
    )
    for ax, name in zip(axes.flat, names):
        act = fastact.ACTIVATIONS[name]
        f, d = act.forward(x), act.grad(x)
        ax.axhline(0, color="0.85", lw=0.6)
        ax.axvline(0, color="0.85", lw=0.6)
        ax.plot(x, f, color="C0", lw=1.6, label="f")
        ax.plot(x, d, color="C3", lw=1.2, ls="--", label="f'")
        lo = min(f.min(), d.min(), -1.2)
        hi = max(f.max(), d.max(), 1.2)
        ax.set_ylim(max(lo, -3.0) - 0.2, min(hi, 5.5) + 0.2)
        ax.set_xlim(LO, HI)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7, loc="upper left", frameon=False)
    fig.suptitle("fastact: f (solid) and f' (dashed) on [-5, 5]", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "plot",
        help="gallery of every activation: f and f' on [-5, 5] (needs matplotlib)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--out", metavar="FILE.png", default="fastact_gallery.png",
                   help="image to write (default fastact_gallery.png)")  # fmt: skip
    p.add_argument("--only", help="comma-separated activations (default: all)")
    p.set_defaults(func=run)


def run(args) -> int:

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("plot: needs matplotlib, which is not installed (pip install matplotlib, "
              "or pip install 'fastact[bench]')", file=sys.stderr)  # fmt: skip
        return 2
    try:
        names = select_names(args.only)
    except ValueError as e:
        print(f"plot: {e}", file=sys.stderr)
        return 2
    gallery(names, args.out)
    print(f"wrote {args.out} ({len(names)} activations)")
    return 0
