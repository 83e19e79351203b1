"""PyTorch twin of rdbench-lm's transformer, timed the way `lm_step_bench` times rdbench-lm.

Same architecture (GPT-2 layout: learned positions, pre-norm blocks, explicit causal attention,
GELU-tanh MLP, final LayerNorm, head tied to the token embedding), same shapes, float32, AdamW,
the same thread count. Prints one JSON line per measured quantity, in the schema the Rust side
prints, so `scripts/bench-lm-step.sh` can put them side by side.

Run by scripts/bench-lm-step.sh, which installs torch from PyPI into its own virtual
environment; the test suite never needs torch.
"""

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, n_head, d_ff, eps, attention):
        super().__init__()
        self.n_head, self.attention = n_head, attention
        self.ln1 = nn.LayerNorm(d, eps=eps)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d, eps=eps)
        self.fc = nn.Linear(d, d_ff)
        self.mproj = nn.Linear(d_ff, d)

    def forward(self, x, mask):
        b, t, d = x.shape
        hd = d // self.n_head
        q, k, v = (
            self.qkv(self.ln1(x)).view(b, t, 3, self.n_head, hd).unbind(2)
        )
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))
        if self.attention == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd)) + mask[:t, :t]
            y = att.softmax(dim=-1) @ v
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mproj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class Gpt(nn.Module):
    def __init__(self, vocab, ctx, d, n_layer, n_head, d_ff, eps=1e-5, attention="explicit"):
        super().__init__()
        self.wte = nn.Parameter(torch.randn(vocab, d) * 0.02)
        self.wpe = nn.Parameter(torch.randn(ctx, d) * 0.02)
        self.blocks = nn.ModuleList(
            Block(d, n_head, d_ff, eps, attention) for _ in range(n_layer)
        )
        self.ln_f = nn.LayerNorm(d, eps=eps)
        self.register_buffer(
            "mask", torch.full((ctx, ctx), float("-inf")).triu(1), persistent=False
        )

    def loss(self, idx):
        inp, tgt = idx[:, :-1], idx[:, 1:]
        t = inp.shape[1]
        x = self.wte[inp] + self.wpe[:t]
        for blk in self.blocks:
            x = blk(x, self.mask)
        logits = self.ln_f(x) @ self.wte.t()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--d-model", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--attention", choices=["explicit", "sdpa"], default="explicit")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--only", choices=["train_step", "eval_forward"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = Gpt(a.vocab, a.ctx, a.d_model, a.layers, a.heads, 4 * a.d_model, attention=a.attention)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    loss_fn = torch.compile(model.loss) if a.compile else model.loss
    name = "pytorch " + torch.__version__ + (" compile" if a.compile else " eager")
    if a.attention == "sdpa":
        name += " sdpa"
    gen = torch.Generator().manual_seed(1)

    def batch():
        return torch.randint(0, a.vocab, (a.batch, a.ctx + 1), generator=gen)

    step_ms = []
    for i in range(a.warmup + a.steps if a.only in (None, "train_step") else 0):
        idx = batch()
        t0 = time.perf_counter()
        loss = loss_fn(idx)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = (time.perf_counter() - t0) * 1e3
        if i >= a.warmup:
            step_ms.append(dt)
    fwd_ms = []
    with torch.no_grad():
        for i in range(a.warmup + a.steps if a.only in (None, "eval_forward") else 0):
            idx = batch()
            t0 = time.perf_counter()
            loss_fn(idx).item()
            dt = (time.perf_counter() - t0) * 1e3
            if i >= a.warmup:
                fwd_ms.append(dt)
    for what, samples in (("train_step", step_ms), ("eval_forward", fwd_ms)):
        if not samples:
            continue
        print(json.dumps({
            "impl": name,
            "measure": what,
            "threads": a.threads,
            "median_ms": statistics.median(samples),
            "samples_ms": [round(s, 3) for s in samples],
        }))


if __name__ == "__main__":
    main()
