"""Step 1: the JSONL data into a token tensor."""

import argparse

import torch

from model import load_config, read_jsonl

p = argparse.ArgumentParser()
p.add_argument("--config")
p.add_argument("--data")
p.add_argument("--out")
a = p.parse_args()
cfg = load_config(a.config)
torch.save(read_jsonl(a.data, cfg["train"]["seq_len"]), a.out)
