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


def _opposite_nesting(
    pairs: list[tuple[nn.Module, nn.Module]],
) -> tuple[list[object], list[torch.Tensor]]:
    """Each thread explains its outer model with a target that, once every thread holds
    its outer model (a barrier), explains its inner model: the threads nest in opposite
    orders. Returns each thread's result (a map or the error's message) and the maps
    alone."""
    barrier = threading.Barrier(len(pairs), timeout=TIMEOUT / 4)

    def nested(outer: nn.Module, inner: nn.Module) -> object:
        def target(output: torch.Tensor) -> torch.Tensor:
            barrier.wait()
            normgrad.Gradient(inner)(_x(1, seed=5), 0)
            return output[:, 1]

        try:
            return normgrad.Gradient(outer)(_x(2, seed=6), target)
        except normgrad.InvalidArgumentError as error:
            return str(error)  # not raised again by _run

    results = _run([lambda o=o, i=i: nested(o, i) for o, i in pairs])
    alone = [normgrad.Gradient(outer)(_x(2, seed=6), 1) for outer, _ in pairs]
    return results, alone


def test_nested_calls_in_opposite_orders_raise_instead_of_waiting_forever() -> None:
    """Thread 1 explains A and, from its target, B; thread 2 explains B and, from its
    target, A. Waiting would never end: the thread whose wait would close the cycle raises,
    naming what to do, and the other call finishes with its map; both models are left as
    they were (train mode, no hooks)."""
    probe = _x(1, seed=99)
    a, b = (seeded(Head(Backbone(), 3), s) for s in (1, 2))
    a.train()
    b.train()
    before = (snapshot(a, probe), snapshot(b, probe))
    results, alone = _opposite_nesting([(a, b), (b, a)])
    errors = [r for r in results if isinstance(r, str)]
    assert len(errors) == 1, results
    message = errors[0]
    assert message.startswith("model: explaining Head") and "wait forever" in message
    assert "outside the outer call" in message and "'backbone'" in message, message
    assert any(isinstance(r, torch.Tensor) and torch.equal(r, m) for r, m in zip(results, alone))
    assert all(m.training for m in (*a.modules(), *b.modules()))
    assert_unchanged(before[0], snapshot(a, probe))
    assert_unchanged(before[1], snapshot(b, probe))


def test_a_cycle_through_three_threads_and_shared_parts_raises() -> None:
    """Models sharing parts pairwise (A and C a backbone, C and B a middle block), nested
    A then C and B then A: the cycle through shared parts is seen; and three threads each
    nesting the next one's model: the cycle through three threads is seen. Every thread
    ends, one raising."""
    backbone = seeded(Backbone(), 1)
    middle = seeded(Backbone(), 2)
    a = seeded(Head(backbone, 3), 3)
    c = seeded(Head(nn.Sequential(backbone, nn.Conv2d(12, 3, 1), middle), 3), 4)
    b = seeded(Head(nn.Sequential(nn.Conv2d(3, 3, 1), middle), 3), 5)
    results, alone = _opposite_nesting([(a, c), (b, a)])
    errors = [r for r in results if isinstance(r, str)]
    assert len(errors) == 1 and "wait forever" in errors[0], results
    for result, expected in zip(results, alone):
        if isinstance(result, torch.Tensor):
            assert torch.equal(result, expected)
    d = seeded(Head(Backbone(), 3), 6)
    e = seeded(Head(Backbone(), 3), 7)
    f = seeded(Head(Backbone(), 3), 8)
    results, _ = _opposite_nesting([(d, e), (e, f), (f, d)])
    errors = [r for r in results if isinstance(r, str)]
    assert len(errors) == 1 and "wait forever" in errors[0], results


def test_a_nested_call_waits_for_a_call_that_can_end() -> None:
    """A nested call whose model another thread is explaining (not nested, so it ends)
    waits for it rather than raising."""
    outer = seeded(Head(Backbone(), 3), 9)
    inner = seeded(Head(Backbone(), 3), 10)
    inner_running = threading.Event()

    def slow() -> None:
        inner_running.set()
        threading.Event().wait(0.3)  # the nested call starts waiting meanwhile

    def explain_outer() -> torch.Tensor:
        assert inner_running.wait(TIMEOUT / 4)

        def target(output: torch.Tensor) -> torch.Tensor:
            normgrad.Gradient(inner)(_x(1, seed=11), 0)
            return output[:, 0]

        return normgrad.Gradient(outer)(_x(1, seed=12), target)

    inner.gate = slow
    try:
        results = _run([lambda: normgrad.Gradient(inner)(_x(1, seed=13), 0), explain_outer])
    finally:
        inner.gate = None
    assert all(isinstance(r, torch.Tensor) for r in results)
