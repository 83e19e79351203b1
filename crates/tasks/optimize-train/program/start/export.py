"""Step 3: the last checkpoint's weights as safetensors."""

import argparse

import torch

from model import GPT, load_config, save_safetensors

p = argparse.ArgumentParser()
p.add_argument("--config")
p.add_argument("--checkpoint")
p.add_argument("--out")
a = p.parse_args()
cfg = load_config(a.config)
model = GPT(cfg["model"])
model.load_state_dict(torch.load(a.checkpoint)["model"])
save_safetensors(dict(model.named_parameters()), a.out)
