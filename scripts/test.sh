#!/usr/bin/env bash
# The test suite, exactly as CI runs it (.ci/run calls this). Installs what the tests need:
# NVRTC from PyPI (every .cu in the repository is compiled with it; no GPU needed) and the
# Python packages of the aggregation cross-check; then runs the kernel emulator tests and
# every Rust test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check nvidia-cuda-nvrtc scikit-learn numpy
echo "== kernel logic on the CPU emulator (kernels/tools)"
bash kernels/tools/run_emu_tests.sh
echo "== cargo test --workspace"
cargo test --workspace --locked
