#!/usr/bin/env bash
# Makes the attempt summaries in this folder with the real binary, on a CPU, in a throwaway home:
# three agents, two attempts each at tree-traversal (120 human minutes) and scaling-law (480):
#   start-only  submits the starting solution everywhere (scores 0),
#   reference   submits the reference solution everywhere (scores 1),
#   partial     the reference at tree-traversal, the starting solution at scaling-law.
# Usage (from the repository root): docs/examples/aggregate/make.sh [path/to/rdbench]
set -euo pipefail
bin=${1:-target/release/rdbench}
out=docs/examples/aggregate
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export RDBENCH_HOME=$work/home

attempt() { # agent task solution run
  local dir=$work/$1-$2-$4
  "$bin" start "$2" --dir "$dir" --agent "$1" >/dev/null 2>&1
  if [ "$3" = reference ]; then
    "$bin" install-solution "$2" reference --dir "$dir" >/dev/null 2>&1
  fi
  "$bin" score "$dir" >/dev/null 2>&1
  "$bin" finish "$dir" --out "$out/$1-$2-$4.json" 2>/dev/null
}

rm -f "$out"/*.json
for run in 1 2; do
  for task in tree-traversal scaling-law; do
    attempt start-only "$task" start "$run"
    attempt reference "$task" reference "$run"
  done
  attempt partial tree-traversal reference "$run"
  attempt partial scaling-law start "$run"
done
