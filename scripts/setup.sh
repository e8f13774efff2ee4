#!/usr/bin/env bash
# Create .venv with faceweave installed (CPU). Usage: bash scripts/setup.sh [test]
# torch is pinned to 2.13.0 and installed first: that exact version has a local CPU wheel,
# any other request pulls a multi-GB CUDA build. torchvision is never needed.
# `test` also installs the test extra (pytest, the web app's Gradio, gradio_client, Selenium)
# and, as root, the Debian packages chromium and chromium-driver for the app's browser test.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q "torch==2.13.0"
extra=""
if [[ "${1:-}" == "test" ]]; then
    extra="[test]"
    if [[ "$(id -u)" == 0 && ( ! -x /usr/bin/chromium || ! -x /usr/bin/chromedriver ) ]]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null; } \
            || echo "warning: could not install chromium and chromium-driver; the app's browser test will be skipped" >&2
    fi
fi
.venv/bin/python -m pip install -q -e ".${extra}"
# MTCNN face-detector weights for faceweave.align (real-photo alignment). --no-deps because
# facenet-pytorch requires torchvision, which is never installed: faceweave only reads the
# weight files in its wheel and never imports the package.
.venv/bin/python -m pip install -q --no-deps "facenet-pytorch==2.6.0"
