"""Speed-up of fastact over NumPy, SciPy and PyTorch, activation by activation:
``[activation, peer, n, dtype]`` -> peer's time / fastact's time for the in-place forward
(fastact with ``target="auto"``; the peers as in ``bench_activations``). Both are timed
interleaved in one process, the best of several rounds each, so the ratio survives a machine
whose speed drifts; above 1 means fastact is faster.
"""

from __future__ import annotations

from .bench_sigmoid import _best_of
from .common import ACTIVATIONS, DTYPES, Fastact, array, make_impl, size, sizes


class Speedup:
    params = [ACTIVATIONS, ["numpy", "scipy", "torch"], sizes("1e6"), DTYPES]
    param_names = ["activation", "peer", "n", "dtype"]
    unit = "x (peer time / fastact time)"
    timeout = 120

    def setup(self, activation, peer, n, dtype):
        self.fa = Fastact("fastact-auto", activation, target="auto")
        self.peer = make_impl(peer, activation, "forward_")
        n = size(n)
        self.a = array(n, dtype)
        self.b = array(n, dtype)
        self.b_native = self.peer.to_native(self.b)
        self.fa.forward_(self.a)  # compile / load outside the timing
        try:
            self.peer.forward_(self.b_native)
        except (RuntimeError, TypeError, ValueError, AttributeError) as e:
            if not self.peer.lenient:
                raise
            raise NotImplementedError(f"{peer}: {type(e).__name__}: {e}") from None

    def track_speedup(self, activation, peer, n, dtype):
        native = self.b_native
        t_fa, t_peer = _best_of(
            [self.fa.forward_, lambda b: self.peer.forward_(native)],
            [self.a, self.b],
            budget_s=1.0,
        )
        return t_peer / t_fa
