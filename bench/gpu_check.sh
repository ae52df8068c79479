#!/usr/bin/env bash
# CUDA checks (under 5 minutes where a GPU exists; skips cleanly without one):
# the CUDA-marked tests, float64 gradients against autograd per layer on CUDA,
# `handgrad compare --device cuda` for two recipes (ninja-gd, fleuret-practical3; float64,
# 20 steps), and the step time of handgrad against autograd at batches 128 and 4,096, as one
# table (bench/gpu_check.py).
# Usage: bench/gpu_check.sh   (from the repository root, with the venv in .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: no CUDA device on this machine; skipped"
    exit 0
fi
"$PY" -m pytest -q -p no:randomly tests/test_nn_module.py tests/test_distributed.py -k cuda
"$PY" bench/gpu_check.py
