#!/usr/bin/env bash
# Create .venv with faceweave installed (CPU). Usage: bash scripts/setup.sh [test]
# torch is pinned to 2.13.0 and installed first: that exact version has a local CPU wheel,
# any other request pulls a multi-GB CUDA build. torchvision is never needed.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q "torch==2.13.0"
extra=""
[[ "${1:-}" == "test" ]] && extra="[test]"
.venv/bin/python -m pip install -q -e ".${extra}"
