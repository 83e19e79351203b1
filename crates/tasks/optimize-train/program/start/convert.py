"""Step 1: the JSONL data into a token tensor."""

import torch

from model import args_and_config, read_jsonl

a, cfg = args_and_config("--data", "--out")
torch.save(read_jsonl(a.data, cfg["train"]["seq_len"]), a.out)
