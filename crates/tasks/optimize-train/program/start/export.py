"""Step 3: the last checkpoint's weights as safetensors."""

import torch

from model import GPT, args_and_config, save_safetensors

a, cfg = args_and_config("--checkpoint", "--out")
model = GPT(cfg["model"])
model.load_state_dict(torch.load(a.checkpoint)["model"])
save_safetensors(dict(model.named_parameters()), a.out)
