#!/usr/bin/env bash
# serve-llm's model speed beside llama.cpp, in one run, on the same GGUF, prompt tokens and
# thread count: prefill tokens/s, greedy decode tokens/s for one sequence, and aggregate decode
# tokens/s for 8 sequences sharing one prefill (a request with n = 8).
#
# - rdbench: crates/llm/examples/bench.rs, built in release for x86-64-v3 (AVX2 and FMA, as the
#   serving binary should be) into target/x86-64-v3.
# - llama.cpp: scripts/bench_llamacpp.py through llama-cpp-python (pinned below), built from
#   source with the machine's own instruction set into .cache/bench-venv the first time (about
#   6 minutes on 2 cores); n = 8 both batched (llama.cpp's own multi-sequence decode) and
#   sequential (what llama-cpp-python's completion API gives).
#
# The engines take turns, ROUNDS times (each round: every measurement REPS times with rdbench,
# then with llama.cpp), so that a machine whose speed drifts (a shared VM) slows both alike.
# Raw samples (one JSON line per repetition, both engines) are kept in
# .cache/bench/serve-llm-<UTC time>.jsonl; the table printed is the median of all repetitions.
#
# Usage: scripts/bench-serve-llm.sh [THREADS] [DECODE_TOKENS] [REPS] [ROUNDS]
#        (defaults: 2 64 3 3)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
decode_tokens=${2:-64}
reps=${3:-3}
rounds=${4:-3}
LLAMA_CPP_PYTHON=0.3.36
gguf=$(scripts/fetch-smollm2.sh)
venv=.cache/bench-venv
if ! "$venv/bin/python" -c "import llama_cpp" 2>/dev/null; then
  echo "== building llama-cpp-python $LLAMA_CPP_PYTHON from source into $venv (several minutes)" >&2
  python3 -m venv "$venv"
  CMAKE_ARGS="-DGGML_NATIVE=ON" "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "llama-cpp-python==$LLAMA_CPP_PYTHON" numpy >&2
fi
echo "== building the rdbench routine (release, x86-64-v3)" >&2
RUSTFLAGS="-C target-cpu=x86-64-v3" CARGO_TARGET_DIR=target/x86-64-v3 \
  cargo build --quiet --release -p rdbench-llm --example bench
mkdir -p .cache/bench
samples=.cache/bench/serve-llm-$(date -u +%Y%m%dT%H%M%SZ).jsonl
tokens=$(mktemp)
trap 'rm -f "$tokens"' EXIT
echo "== $rounds rounds of rdbench then llama.cpp: $threads threads, $decode_tokens decode tokens, $reps repetitions" >&2
: >"$samples"
for _ in $(seq "$rounds"); do
  target/x86-64-v3/release/examples/bench "$gguf" "$threads" "$decode_tokens" "$reps" "$tokens" >>"$samples"
  "$venv/bin/python" scripts/bench_llamacpp.py "$gguf" "$threads" "$decode_tokens" "$reps" "$tokens" \
    >>"$samples" 2>/dev/null
done
echo "raw samples: $samples"
"$venv/bin/python" - "$samples" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
heads = {r["engine"]: r for r in rows if "engine" in r}
engine = None
rates = {}
for r in rows:
    if "engine" in r:
        engine = r["engine"]
        continue
    key = (engine, r["phase"], r.get("n", 0), r.get("mode", "batched"))
    rates.setdefault(key, []).append(r["tokens"] / r["seconds"])
def cell(engine, phase, n=0, mode="batched"):
    v = rates.get((engine, phase, n, mode))
    return f"{statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f})" if v else "-"
cpu = open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": \t")
print(f"SmolLM2-135M-Instruct (Q4_1 file), {heads['rdbench']['threads']} threads, {cpu}")
print(f"prompt {heads['rdbench']['prompt_tokens']} tokens; tokens/s, median (range) of the repetitions")
print("| engine | prefill | decode n=1 | decode n=8 (aggregate) |")
print("|---|---|---|---|")
print(f"| rdbench serve-llm | {cell('rdbench', 'prefill')} | "
      f"{cell('rdbench', 'decode', 1)} | {cell('rdbench', 'decode', 8)} |")
v = heads.get("llama.cpp", {}).get("version", "?")
print(f"| llama.cpp (llama-cpp-python {v}) | {cell('llama.cpp', 'prefill')} | "
      f"{cell('llama.cpp', 'decode', 1)} | {cell('llama.cpp', 'decode', 8)} batched, "
      f"{cell('llama.cpp', 'decode', 8, 'sequential')} sequential |")
PY
