#!/usr/bin/env bash
# Reads data/train.jsonl, writes trained_model/model.safetensors. Three steps, three interpreters.
set -euo pipefail
cd "$(dirname "$0")"
rm -rf work trained_model
mkdir -p work trained_model
python3 convert.py --config train.toml --data data/train.jsonl --out work/tokens.pt
python3 train.py --config train.toml --tokens work/tokens.pt --checkpoints work/checkpoints
python3 export.py --config train.toml --checkpoint work/checkpoints/latest.pt --out trained_model/model.safetensors
