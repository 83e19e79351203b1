#!/usr/bin/env bash
# finetune-qa full's generation cost beside what a user would run instead, in one run: a
# GPT-2-small-sized policy (random weights) answering PROMPTS prompts of PROMPT_TOKENS tokens
# with NEW_TOKENS greedy tokens each, on THREADS CPU threads.
#
# - rdbench: crates/tasks/finetune-qa/examples/full_generation.rs (release), the scorer's own
#   generate_tokens: 64 sequences decoded together on rdbench-lm's engine.
# - transformers: scripts/bench_gpt2_generation.py, GPT2LMHeadModel.generate on PyTorch, the
#   whole batch at once; PyTorch from the project's .venv, transformers (pinned below)
#   pip-installed into .cache/bench-transformers the first time.
#
# The engines take turns ROUNDS times, so a machine whose speed drifts slows both alike. Raw
# samples: .cache/bench/finetune-qa-generation-<UTC time>.jsonl; the medians are printed.
#
# Usage: scripts/bench-finetune-qa-generation.sh [PROMPTS] [PROMPT_TOKENS] [NEW_TOKENS] [THREADS] [ROUNDS]
#        (defaults: 64 40 60 2 3)
set -euo pipefail
cd "$(dirname "$0")/.."
prompts=${1:-64}
prompt_tokens=${2:-40}
new_tokens=${3:-60}
threads=${4:-2}
rounds=${5:-3}
TRANSFORMERS="transformers==4.57.6"
python=.venv/bin/python
site=.cache/bench-transformers
if ! "$python" -c "import torch"; then
  echo "PyTorch is missing from .venv: run scripts/test.sh once" >&2
  exit 2
fi
if ! PYTHONPATH=$site "$python" -c "import transformers" 2>/dev/null; then
  echo "== installing $TRANSFORMERS into $site" >&2
  "$python" -m pip install --quiet --disable-pip-version-check --target "$site" \
    "$TRANSFORMERS" huggingface-hub tokenizers safetensors regex pyyaml tqdm filelock requests packaging >&2
fi
cargo build --quiet --release -p rdbench-task-finetune-qa --example full_generation
mkdir -p .cache/bench
samples=.cache/bench/finetune-qa-generation-$(date -u +%Y%m%dT%H%M%SZ).jsonl
: >"$samples"
args=("$prompts" "$prompt_tokens" "$new_tokens" "$threads" 1)
for _ in $(seq "$rounds"); do
  target/release/examples/full_generation "${args[@]}" >>"$samples"
  PYTHONPATH=$site "$python" scripts/bench_gpt2_generation.py "${args[@]}" 2>/dev/null >>"$samples"
done
echo "raw samples: $samples"
"$python" - "$samples" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
for engine in dict.fromkeys(r["engine"] for r in rows):
    secs = [r["seconds"] for r in rows if r["engine"] == engine]
    rate = [r["generated_tokens_per_s"] for r in rows if r["engine"] == engine]
    print(f"{engine:45s} {statistics.median(secs):7.1f} s ({min(secs):.1f}-{max(secs):.1f}), "
          f"{statistics.median(rate):6.1f} generated tokens/s")
PY
