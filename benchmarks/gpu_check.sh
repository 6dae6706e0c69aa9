#!/usr/bin/env bash
# The GPU checks in one run, about 9 minutes at most on one GPU: the CUDA tests, then the
# CUDA benchmark (with the syncs per call CUDA's debug mode reports) and the several-classes
# benchmark (multilabel.py), written under
# benchmarks/results/ (cuda.json, cuda.md, gpu_check.log) and copied to $OUT when it is set.
#
#   bash benchmarks/gpu_check.sh
#   bash benchmarks/gpu_check.sh paper   # the protocol at the paper's scale instead
#
# "paper" runs `examples/protocol.py --paper` (ResNet-50 and EfficientNet-B0 at 320 px,
# five seeds, on cuda) under a limit of 560 s, into docs/results/paper/, with the
# reproduction table made from it; the protocol writes its per-seed results after every
# run, so a run stopped at the limit keeps the runs it finished. Everything is packed into
# $OUT/paper.tgz (one file: the device's $OUT takes few), with the log beside it.
#
# Run from anywhere; python3 must hold torch with CUDA, torchvision, pytest, hypothesis and
# scipy. Captum and pytorch-grad-cam (the benchmark's peers, and the import of
# tests/test_baselines.py) are optional: a folder .whl/ of wheels at the repository's root is
# installed first, if there is one. Each step has its own time limit, so a slow step cannot
# take the others' time; the benchmark saves its JSON after every part, and a run stopped at
# its limit is still reported from the parts it finished.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
RESULTS=benchmarks/results
PAPER=docs/results/paper
if [ "${1:-}" = "paper" ]; then LOG=$PAPER/run.log; else LOG=$RESULTS/gpu_check.log; fi
mkdir -p "$(dirname "$LOG")"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}

{
    echo "== environment ($(date '+%Y-%m-%d %H:%M:%S'))"
    git rev-parse HEAD 2>/dev/null || echo "commit unknown"
    nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not found"
    "$PY" - <<'EOF'
import importlib

import torch

print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")
for name in ("torchvision", "captum", "pytorch_grad_cam", "pytest", "hypothesis", "scipy"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "installed"))
    except ImportError:
        print(name, "not installed")
EOF
} 2>&1 | tee "$LOG"

if [ "${1:-}" = "paper" ]; then
    echo "== the protocol at the paper's scale" | tee -a "$LOG"
    timeout 560 "$PY" examples/protocol.py --paper --out "$PAPER" 2>&1 | tee -a "$LOG"
    paper_status=${PIPESTATUS[0]}
    echo "protocol: exit status $paper_status" | tee -a "$LOG"
    if [ -f "$PAPER/results.csv" ]; then
        "$PY" examples/reproduction.py "$PAPER/results.csv" --out "$PAPER/reproduction.md" \
            >/dev/null 2>>"$LOG"
    fi
    if [ -n "${OUT:-}" ]; then
        tar czf "$OUT/paper.tgz" "$PAPER" && cp "$LOG" "$OUT/"
    fi
    exit "$paper_status"
fi

# 1. the CUDA tests (each compares the device with the CPU); a module whose imports are
# missing (captum for test_baselines.py) is reported, the others still run
echo "== CUDA tests" | tee -a "$LOG"
timeout 180 "$PY" -m pytest -p no:cacheprovider -q -rs -o addopts="" \
    --continue-on-collection-errors -k cuda tests 2>&1 | tee -a "$LOG"
tests_status=${PIPESTATUS[0]}
echo "CUDA tests: exit status $tests_status" | tee -a "$LOG"

# 2. the benchmark, at the sizes of the earlier GPU run (docs/benchmarks.md)
echo "== benchmark" | tee -a "$LOG"
timeout 290 "$PY" benchmarks/run.py --device cuda --rounds 9 --min-run-time 0.2 \
    --markdown "$RESULTS/cuda.md" 2>&1 | tee -a "$LOG"
bench_status=${PIPESTATUS[0]}
if [ "$bench_status" -ne 0 ] && [ -f "$RESULTS/cuda.json" ]; then
    echo "benchmark stopped (exit status $bench_status): reporting the parts it finished" \
        | tee -a "$LOG"
    "$PY" benchmarks/run.py --device cuda --report-only --markdown "$RESULTS/cuda.md" \
        >/dev/null 2>>"$LOG"
fi
echo "benchmark: exit status $bench_status" | tee -a "$LOG"

# 3. several classes at once (ResNet-50, 224x224, batch 8, K = 5): one call against K
# calls, and the two floors (batched backward, class by class) that decide which one
# normgrad uses on this device
echo "== several classes at once" | tee -a "$LOG"
timeout 90 "$PY" benchmarks/multilabel.py --size 224 --batch 8 --device cuda \
    --min-run-time 0.5 --min-rounds 7 2>&1 | tee -a "$LOG"
multi_status=${PIPESTATUS[0]}
echo "several classes: exit status $multi_status" | tee -a "$LOG"

if [ -n "${OUT:-}" ]; then
    cp "$RESULTS/cuda.json" "$RESULTS/cuda.md" "$RESULTS/multilabel-cuda.json" \
        "$RESULTS/multilabel-cuda.md" "$LOG" "$OUT"/ 2>/dev/null
fi
[ "$tests_status" -eq 0 ] && [ "$bench_status" -eq 0 ] && [ "$multi_status" -eq 0 ]
