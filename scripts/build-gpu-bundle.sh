#!/usr/bin/env bash
# Builds, on a machine with Rust, everything scripts/gpu-check.sh runs on a GPU machine that has
# no Rust toolchain: the release `rdbench` binary and the release test binaries of the crates
# with GPU paths, stripped, under gpu-bundle/ (ignored by git; pass it to the device as carry).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf gpu-bundle && mkdir -p gpu-bundle/tests
cargo build --release --locked --bin rdbench
cp target/release/rdbench gpu-bundle/rdbench
cargo test --release --locked --no-run --message-format=json \
    -p rdbench-gpu -p rdbench-cli -p rdbench-task-prefix-sum 2>/dev/null |
python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        t = m["target"]
        name = m["package_id"].split("#")[0].rsplit("/", 1)[-1] + "--" + t["name"]
        shutil.copy(m["executable"], "gpu-bundle/tests/" + name)
        print("bundled", name)
'
strip gpu-bundle/rdbench gpu-bundle/tests/*
du -sh gpu-bundle
