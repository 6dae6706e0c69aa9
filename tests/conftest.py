from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# The default profile (README's test command, CI) draws the same examples on every run, so
# a run's verdict does not depend on chance; "thorough" explores new random examples each run
# (HYPOTHESIS_PROFILE=thorough python -m pytest) and is how new failing cases are found.
settings.register_profile(
    "default",
    deadline=None,
    max_examples=40,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
