from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# The "ci" profile (the default: README's test command, CI) draws the same examples on
# every run, so a run's verdict does not depend on chance; "thorough" explores new random
# examples each run, ten times as many (HYPOTHESIS_PROFILE=thorough python -m pytest), and
# is how new failing cases are found. A test that needs its own number of examples says so
# with @examples(n), which the profile scales, never with @settings(max_examples=...).
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=40,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("default", settings.get_profile("ci"))  # the earlier name
settings.load_profile(PROFILE)


def examples(n: int) -> settings:
    """A property test's own number of examples ``n``, scaled by the profile (thorough: ten
    times as many), its other settings the profile's."""
    return settings(max_examples=n * (10 if PROFILE == "thorough" else 1), deadline=None)


torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
