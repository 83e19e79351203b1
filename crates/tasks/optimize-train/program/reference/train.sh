#!/usr/bin/env bash
# Reads data/train.jsonl, writes trained_model/model.safetensors: one interpreter.
set -euo pipefail
cd "$(dirname "$0")"
rm -rf trained_model
mkdir -p trained_model
python3 train.py --config train.toml --data data/train.jsonl --out trained_model/model.safetensors
