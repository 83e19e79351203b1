"""Reading, training and export in one process: the batches indexed in place, no checkpoints,
no evaluation pass, PyTorch's fused attention, the weights written from memory."""

import torch

from model import GPT, args_and_config, batch_order, lr_at, optimizer, read_jsonl, save_safetensors

a, cfg = args_and_config("--data", "--out")
t = cfg["train"]
torch.manual_seed(t["seed"])
model = GPT(cfg["model"], attention="fused")
opt = optimizer(model, t)
tokens = read_jsonl(a.data, t["seq_len"])
order = batch_order(tokens.shape[0], t)
for step in range(t["steps"]):
    for group in opt.param_groups:
        group["lr"] = lr_at(t, step)
    loss = model.loss(tokens[order[step * t["batch_size"] : (step + 1) * t["batch_size"]]])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
save_safetensors(dict(model.named_parameters()), a.out)
