"""Step 2: training, with a checkpoint (model and optimizer) every few steps and an evaluation
pass now and then."""

import multiprocessing as mp
import os

import torch

from model import GPT, args_and_config, batch_order, lr_at, optimizer

LOADER_WORKERS = 6
CHECKPOINT_EVERY = 4
EVAL_EVERY = 32


def loader(tokens_path, order, batch_size, steps, conn):
    """A data-loader worker: announces itself, then sends the batches in order (as bytes: no
    shared memory between the processes)."""
    tokens = torch.load(tokens_path)
    conn.send(os.getpid())
    for step in range(steps):
        rows = order[step * batch_size : (step + 1) * batch_size]
        conn.send(tokens[rows].numpy().tobytes())
    conn.close()


def main():
    a, cfg = args_and_config("--tokens", "--checkpoints")
    t = cfg["train"]
    torch.manual_seed(t["seed"])
    model = GPT(cfg["model"], attention="naive")
    opt = optimizer(model, t)
    tokens = torch.load(a.tokens)
    order = batch_order(tokens.shape[0], t)

    # Start a pool of loader workers, wait for all of them, then keep only the first.
    ctx = mp.get_context("spawn")
    pipes = [ctx.Pipe(duplex=False) for _ in range(LOADER_WORKERS)]
    workers = [
        ctx.Process(target=loader, args=(a.tokens, order, t["batch_size"], t["steps"], send))
        for _, send in pipes
    ]
    for w in workers:
        w.start()
    for recv, _ in pipes:
        recv.recv()
    for w in workers[1:]:
        w.kill()
        w.join()
    batches = pipes[0][0]
    shape = (t["batch_size"], t["seq_len"])

    os.makedirs(a.checkpoints, exist_ok=True)
    evals = []
    for step in range(t["steps"]):
        for group in opt.param_groups:
            group["lr"] = lr_at(t, step)
        batch = torch.frombuffer(bytearray(batches.recv()), dtype=torch.long).view(shape)
        loss = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % CHECKPOINT_EVERY == 0 or step + 1 == t["steps"]:
            path = os.path.join(a.checkpoints, f"step-{step + 1}.pt")
            torch.save({"step": step + 1, "model": model.state_dict(), "optimizer": opt.state_dict()}, path)
            with open(path, "rb") as f:
                os.fsync(f.fileno())
            latest = os.path.join(a.checkpoints, "latest.pt")
            if os.path.lexists(latest):
                os.remove(latest)
            os.symlink(os.path.basename(path), latest)
        if (step + 1) % EVAL_EVERY == 0:
            with torch.no_grad():
                evals.append(sum(model.loss(tokens[i : i + 64]).item() for i in range(0, tokens.shape[0], 64)))
    workers[0].join()
    with open(os.path.join(a.checkpoints, "eval.txt"), "w") as f:
        f.write("\n".join(str(e) for e in evals))


if __name__ == "__main__":
    main()
