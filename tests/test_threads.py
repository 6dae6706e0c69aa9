"""Threads: explanations that share a module run one at a time, others in parallel.

Every test runs its threads as daemons joined with a timeout, so a deadlock fails the test
instead of hanging the suite.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import torch
from torch import nn

import normgrad
from normgrad._model.hooks import explaining

from .lifecycle import assert_unchanged, snapshot
from .models import seeded

TIMEOUT = 120.0


class Backbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1, stride=2)
        self.relu2 = nn.ReLU()
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.relu2(self.conv2(self.relu1(self.bn1(self.conv1(x))))))


class Head(nn.Module):
    """A classifier on a backbone that may be shared with other heads."""

    def __init__(self, backbone: nn.Module, classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(12, classes)
        self.gate: Callable[[], None] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate is not None:
            self.gate()
        return self.fc(self.backbone(x).mean(dim=(2, 3)))


def _x(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def _run(jobs: list[Callable[[], object]]) -> list[object]:
    """Run each job in its own daemon thread; all must finish within ``TIMEOUT``."""
    results: list[object] = [None] * len(jobs)

    def work(i: int) -> None:
        try:
            results[i] = jobs[i]()
        except BaseException as error:  # reported below, in the test's thread
            results[i] = error

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + TIMEOUT
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a thread did not finish: deadlock?"
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def _shared() -> tuple[Head, Head]:
    backbone = seeded(Backbone(), 1)
    return seeded(Head(backbone, 4), 2), seeded(Head(backbone, 3), 3)


def test_two_models_sharing_a_backbone_explained_from_two_threads() -> None:
    """The backbone (train mode: BatchNorm, dropout) is hooked and put in eval mode by both
    models' explanations: they must not overlap (a hook of one call would see the other's
    forward pass: 'ran 2 times'), and the backbone must end in train mode."""
    first, second = _shared()
    first.train()
    second.train()
    probe = _x(1, seed=99)
    before = (snapshot(first, probe), snapshot(second, probe))
    layers = ["backbone.bn1", "backbone.conv2"]
    jobs = []
    for i in range(40):
        model = first if i % 2 == 0 else second
        explainer: normgrad.Explainer
        if i % 4 < 2:
            explainer = normgrad.NormGrad(model, layers)
        else:
            explainer = normgrad.GuidedGradCAM(model, "backbone.relu2")
        jobs.append((explainer, _x(2, seed=i), i % 3))
    sequential = [e(x, t) for e, x, t in jobs]
    threaded = _run([lambda e=e, x=x, t=t: e(x, t) for e, x, t in jobs])
    for a, b in zip(sequential, threaded):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b)
    assert all(m.training for m in first.modules())
    assert all(m.training for m in second.modules())
    assert_unchanged(before[0], snapshot(first, probe))
    assert_unchanged(before[1], snapshot(second, probe))


def test_a_target_may_explain_a_model_sharing_the_backbone() -> None:
    """Nested in one thread: the call holds the backbone, the nested call on the other
    model takes it again (no deadlock), while a second thread does the same the other way
    round."""
    first, second = _shared()

    def nested(outer: Head, inner: Head) -> torch.Tensor:
        inner_explainer = normgrad.Gradient(inner)

        def target(output: torch.Tensor) -> torch.Tensor:
            inner_explainer(_x(1, seed=5), 0)
            return output[:, 1]

        return normgrad.NormGrad(outer, "backbone.conv2")(_x(2, seed=6), target)

    results = _run([lambda: nested(first, second), lambda: nested(second, first)] * 3)
    expected = [
        normgrad.NormGrad(model, "backbone.conv2")(_x(2, seed=6), 1) for model in (first, second)
    ]
    for i, result in enumerate(results):
        assert isinstance(result, torch.Tensor) and torch.equal(result, expected[i % 2])


def test_models_with_no_module_in_common_run_in_parallel() -> None:
    """Each model's forward waits for the other's to start: serialised, they would wait
    forever (a barrier with a timeout fails the test instead)."""
    one = seeded(Head(Backbone(), 3), 4)
    other = seeded(Head(Backbone(), 3), 5)
    barrier = threading.Barrier(2, timeout=TIMEOUT / 4)
    one.gate = other.gate = barrier.wait
    try:
        results = _run(
            [
                lambda: normgrad.NormGrad(one, "backbone.conv2")(_x(2, seed=7), 0),
                lambda: normgrad.NormGrad(other, "backbone.conv2")(_x(2, seed=8), 0),
            ]
        )
    finally:
        one.gate = other.gate = None
    assert all(isinstance(r, torch.Tensor) for r in results)


def test_a_waiting_call_holds_nothing() -> None:
    """All or nothing: while thread 1 holds model A, thread 2 waits for A and B together
    without holding B, so thread 3 explains B meanwhile (and only then lets thread 1
    finish). A call that held B while waiting for A would block thread 3 until the barrier
    timed out."""
    a = seeded(Head(Backbone(), 3), 6)
    b = seeded(Head(Backbone(), 3), 7)
    both = nn.ModuleList([a, b])
    a_running = threading.Event()
    b_done = threading.Event()

    def hold_a() -> None:
        a_running.set()
        assert b_done.wait(TIMEOUT / 4), "B was blocked by a call waiting for A"

    def claim_both() -> None:
        assert a_running.wait(TIMEOUT / 4)
        with explaining(both):
            pass

    def explain_b() -> torch.Tensor:
        assert a_running.wait(TIMEOUT / 4)
        threading.Event().wait(0.2)  # let thread 2 start waiting first
        result = normgrad.Gradient(b)(_x(1, seed=9), 0)
        b_done.set()
        return result

    a.gate = hold_a
    try:
        _run([lambda: normgrad.Gradient(a)(_x(1, seed=8), 0), claim_both, explain_b])
    finally:
        a.gate = None
