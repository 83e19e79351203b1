#!/usr/bin/env bash
# Builds, on a machine with Rust, everything scripts/gpu-check.sh runs on a GPU machine that has
# no Rust toolchain: the release `rdbench` binary and the release test binaries of the crates
# with GPU paths (rdbench-gpu and every workspace crate that depends on it, found with
# `cargo metadata`, so a new kernel task needs no edit here), stripped, under gpu-bundle/
# (ignored by git; pass it to the device as carry).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf gpu-bundle && mkdir -p gpu-bundle/tests
cargo build --release --locked --bin rdbench
cp target/release/rdbench gpu-bundle/rdbench
PACKAGES=$(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
m = json.load(sys.stdin)
print(" ".join("-p " + p["name"] for p in m["packages"]
               if p["name"] == "rdbench-gpu" or any(d["name"] == "rdbench-gpu" for d in p["dependencies"])))')
# shellcheck disable=SC2086
cargo test --release --locked --no-run --message-format=json $PACKAGES 2>/dev/null |
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
