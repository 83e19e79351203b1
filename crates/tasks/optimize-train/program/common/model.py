"""The GPT of rdbench-lm (crates/lm/src/model.rs), in PyTorch: pre-norm blocks, learned
positions, a head tied to the token embedding, GELU (tanh), nn.Linear's [out, in] layout, and
the same parameter names, so the scorer reads the weights with rdbench-lm; and what the
scripts share besides (their command line, the data, the weights file)."""

import argparse
import json
import math
import struct
import tomllib

import torch
import torch.nn.functional as F
from torch import nn


def load_config(path):
    with open(path, "rb") as f:
        return tomllib.load(f)


def args_and_config(*flags):
    """A script's command line, `--config` and each of `flags` (all paths), and the config it
    names: (args, config)."""
    p = argparse.ArgumentParser()
    for flag in ("--config", *flags):
        p.add_argument(flag)
    a = p.parse_args()
    return a, load_config(a.config)


class Block(nn.Module):
    def __init__(self, d, n_head, d_ff, eps, attention):
        super().__init__()
        self.ln1 = nn.LayerNorm(d, eps=eps)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(d, 3 * d)
        self.attn.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d, eps=eps)
        self.mlp = nn.Module()
        self.mlp.fc = nn.Linear(d, d_ff)
        self.mlp.proj = nn.Linear(d_ff, d)
        self.n_head = n_head
        self.attention = attention

    def forward(self, x):
        b, t, d = x.shape
        hd = d // self.n_head
        q, k, v = self.attn.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_head, hd).transpose(1, 2) for z in (q, k, v))
        if self.attention == "fused":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            # Written out: scores, mask, softmax, weighted sum.
            att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
            mask = torch.tril(torch.ones(t, t, dtype=torch.bool))
            att = att.masked_fill(~mask, float("-inf"))
            y = torch.softmax(att, dim=-1) @ v
        x = x + self.attn.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp.proj(F.gelu(self.mlp.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, m, attention="naive"):
        super().__init__()
        self.wte = nn.Parameter(torch.empty(m["vocab"], m["d_model"]))
        self.wpe = nn.Parameter(torch.empty(m["ctx"], m["d_model"]))
        self.blocks = nn.ModuleList(
            Block(m["d_model"], m["n_head"], m["d_ff"], m["ln_eps"], attention)
            for _ in range(m["n_layer"])
        )
        self.ln_f = nn.LayerNorm(m["d_model"], eps=m["ln_eps"])
        resid = 0.02 / math.sqrt(2 * m["n_layer"])
        for name, p in self.named_parameters():
            if name.endswith(".bias"):
                nn.init.zeros_(p)
            elif "ln" in name:
                nn.init.ones_(p)
            elif name.endswith("attn.proj.weight") or name.endswith("mlp.proj.weight"):
                nn.init.normal_(p, std=resid)
            else:
                nn.init.normal_(p, std=0.02)

    def loss(self, idx):
        x, y = idx[:, :-1], idx[:, 1:]
        h = self.wte[x] + self.wpe[: x.shape[1]]
        for blk in self.blocks:
            h = blk(h)
        logits = self.ln_f(h) @ self.wte.t()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def lr_at(t, step):
    """Linear warm-up, then cosine decay to min_lr_frac * lr (rdbench-lm's TrainConfig::lr_at)."""
    if step < t["warmup_steps"]:
        return t["lr"] * (step + 1) / t["warmup_steps"]
    span = max(t["steps"] - t["warmup_steps"], 1)
    prog = min((step - t["warmup_steps"]) / span, 1.0)
    low = t["lr"] * t["min_lr_frac"]
    return low + 0.5 * (t["lr"] - low) * (1 + math.cos(math.pi * prog))


def optimizer(model, t):
    return torch.optim.AdamW(
        model.parameters(),
        lr=t["lr"],
        betas=tuple(t["betas"]),
        eps=t["eps"],
        weight_decay=t["weight_decay"],
    )


def batch_order(n_seq, t):
    """Sequence indices of every step, in order: one permutation per epoch from the seed."""
    g = torch.Generator().manual_seed(t["seed"])
    order = []
    while len(order) < t["steps"] * t["batch_size"]:
        order.extend(torch.randperm(n_seq, generator=g).tolist())
    return order


def read_jsonl(path, seq_len):
    rows = []
    with open(path) as f:
        for line in f:
            ids = json.loads(line)["ids"]
            if len(ids) != seq_len:
                raise SystemExit(f"{path}: a sequence of {len(ids)} tokens, expected {seq_len}")
            rows.append(ids)
    return torch.tensor(rows, dtype=torch.long)


def save_safetensors(tensors, path):
    """A safetensors file of float32 tensors (no extra package needed)."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        data = tensors[name].detach().to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(tensors[name].shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for b in blobs:
            f.write(b)
