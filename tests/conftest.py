"""Shared test configuration: Hypothesis profiles, and the xdist groups last.

- ``ci`` (the default): bounded, so the hardening tests take well under two minutes on two
  cores; no deadline (the first call of a kernel compiles it).
- ``long``: on demand, ``pytest tests/test_hypothesis.py --hypothesis-profile=long``.
- ``dev``: a handful of examples, for a quick look.

``--hypothesis-profile`` (Hypothesis' pytest plugin) overrides the default, and so does the
``HYPOTHESIS_PROFILE`` environment variable.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("ci", max_examples=60, derandomize=True, **_COMMON)  # reproducible CI
settings.register_profile("long", max_examples=2000, **_COMMON)
settings.register_profile("dev", max_examples=10, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(config, items):
    """The tests of an ``xdist_group`` (modules with a subprocess fixture) after the others,
    each group in its order: by then the kernels that their subprocesses use are in the
    disk cache. (pyproject's ``--no-loadscope-reorder`` keeps this order.)"""
    items.sort(key=lambda item: item.get_closest_marker("xdist_group") is not None)
