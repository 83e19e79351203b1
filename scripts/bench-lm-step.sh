#!/usr/bin/env bash
# Side-by-side CPU benchmark: one rdbench-lm training step and one evaluation forward pass
# against the same model in PyTorch (eager; add --compile for torch.compile as well).
#
#   scripts/bench-lm-step.sh [--threads N] [--steps N] [--rounds N] [--only MEASURE]
#                            [--candle] [--compile] [--sdpa]
#
# --rounds: alternating rounds (default 2); --only train_step|eval_forward: time one measure;
# --candle: also time rdbench-lm's candle forward pass (`Gpt::loss`, evaluation before
# `GptEvaluator`).
#
# Installs torch from PyPI into its own virtual environment ($BENCH_VENV, default
# target/bench-venv; several GB with its CUDA wheels), builds the Rust side in release, runs
# both with the same shapes and thread count, and prints one table. Raw samples (JSON lines) are
# kept in target/bench-lm-step/. The default shape is fix-embedding's `full` model (2.2 M
# parameters, d 192, 4 layers, context 128, batch 32). The tests never need torch.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${BENCH_VENV:-target/bench-venv}
TORCH=${TORCH_VERSION:-2.15.0}
threads=2; steps=12; rounds=2; only=; candle=0; compile=0; sdpa=0
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --candle) candle=1; shift ;;
    --compile) compile=1; shift ;;
    --sdpa) sdpa=1; shift ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "installing torch $TORCH from PyPI into $VENV (one time)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "torch==$TORCH" numpy
fi
cargo build --release -q -p rdbench-lm --example lm_step_bench
out=target/bench-lm-step
mkdir -p "$out"
raw="$out/samples-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
common=(--threads "$threads" --steps "$steps")
if [ -n "$only" ]; then common+=(--only "$only"); fi
rust_flags=()
if [ "$candle" = 1 ]; then rust_flags+=(--candle); fi
# Alternate the two sides so a change in machine load hits both.
for round in $(seq "$rounds"); do
  target/release/examples/lm_step_bench "${common[@]}" "${rust_flags[@]}" >> "$raw"
  "$VENV/bin/python" crates/lm/bench/torch_step.py "${common[@]}" >> "$raw"
  if [ "$sdpa" = 1 ]; then
    "$VENV/bin/python" crates/lm/bench/torch_step.py "${common[@]}" --attention sdpa >> "$raw"
  fi
  if [ "$compile" = 1 ]; then
    "$VENV/bin/python" crates/lm/bench/torch_step.py "${common[@]}" --compile >> "$raw"
  fi
done
python3 - "$raw" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by, rounds = {}, {}
for r in rows:
    key = (r["impl"], r["measure"])
    by.setdefault(key, []).extend(r["samples_ms"])
    rounds.setdefault(key, []).append(statistics.median(r["samples_ms"]))
impls = list(dict.fromkeys(r["impl"] for r in rows))
n = max(len(v) for v in by.values())
print(f"threads {rows[0]['threads']}; median over up to {n} samples per cell "
      f"({len(next(iter(rounds.values())))} alternating rounds); raw: {sys.argv[1]}")
print(f"{'implementation':34} {'train step ms':>14} {'eval forward ms':>16}")
for i in impls:
    cells = []
    for m in ("train_step", "eval_forward"):
        s = by.get((i, m), [])
        cells.append(f"{statistics.median(s):.1f}" if s else "-")
    print(f"{i:34} {cells[0]:>14} {cells[1]:>16}")
# The spread: each round's median, and rdbench-lm's time over PyTorch eager's round by round.
eager = next((i for i in impls if i.startswith("pytorch") and i.endswith("eager")), None)
for m in ("train_step", "eval_forward"):
    ours, theirs = rounds.get(("rdbench-lm", m)), rounds.get((eager, m))
    if not ours or not theirs:
        continue
    ratios = [a / b for a, b in zip(ours, theirs)]
    print(f"{m}: per-round medians rdbench-lm {', '.join(f'{x:.0f}' for x in ours)}; "
          f"{eager} {', '.join(f'{x:.0f}' for x in theirs)}; ratio per round "
          f"{', '.join(f'{x:.2f}' for x in ratios)} (median {statistics.median(ratios):.2f})")
PY
