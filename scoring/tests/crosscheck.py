#!/usr/bin/env python3
"""Independent cross-check of rdbench-scoring's time-horizon point estimates.

Reads METR-format runs (JSON lines), computes METR's run weights
(1 / runs of the agent on the task / sqrt(tasks of the family the agent has runs on),
normalized per agent) with plain Python, and fits scikit-learn's LogisticRegression with
C = 1 / 0.1 = 10 (L2 on the slope only; the intercept is not penalized), tightly converged.
Prints one JSON object: {agent: {"intercept", "slope", "p50", "p80"}} (null for agents whose
outcomes are all equal).

Usage: crosscheck.py RUNS.jsonl [--soft] [--threshold T]
Needs: numpy, scikit-learn.
"""
import argparse
import json
import math
from collections import defaultdict

import numpy as np
from sklearn.linear_model import LogisticRegression


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs")
    ap.add_argument("--soft", action="store_true")
    ap.add_argument("--threshold", type=float, default=None)
    ap.add_argument("--regularization", type=float, default=0.1)
    args = ap.parse_args()

    rows = [json.loads(line) for line in open(args.runs) if line.strip()]
    by_agent = defaultdict(list)
    for r in rows:
        by_agent[r["alias"]].append(r)

    out = {}
    for agent, runs in sorted(by_agent.items()):
        n_runs = defaultdict(int)
        fam_tasks = defaultdict(set)
        for r in runs:
            n_runs[r["task_id"]] += 1
            fam_tasks[r["task_family"]].add(r["task_id"])
        raw = [1.0 / n_runs[r["task_id"]] / math.sqrt(len(fam_tasks[r["task_family"]])) for r in runs]
        total = sum(raw)
        w = np.array([x / total for x in raw])
        x = np.log2(np.array([float(r["human_minutes"]) for r in runs])).reshape(-1, 1)
        if args.soft:
            y = np.array([float(r["score"]) for r in runs])
        elif args.threshold is None and all(r.get("score_binarized") is not None for r in runs):
            y = np.array([float(r["score_binarized"]) for r in runs])
        else:
            t = 0.9 if args.threshold is None else args.threshold
            y = np.array([1.0 if float(r["score"]) > t else 0.0 for r in runs])
        if np.all(y == y[0]):
            out[agent] = None
            continue
        # Soft labels: a run with score s becomes a 1 of weight s*w and a 0 of weight (1-s)*w.
        frac = (y > 0) & (y < 1)
        if frac.any():
            x = np.vstack([x[~frac], x[frac], x[frac]])
            w = np.concatenate([w[~frac], w[frac] * (1 - y[frac]), w[frac] * y[frac]])
            y = np.concatenate([y[~frac], np.zeros(frac.sum()), np.ones(frac.sum())])
        model = LogisticRegression(C=1.0 / args.regularization, tol=1e-12, max_iter=100000)
        model.fit(x, y, sample_weight=w)
        a = float(model.intercept_[0])
        b = float(model.coef_[0][0])
        out[agent] = {
            "intercept": a,
            "slope": b,
            "p50": 2.0 ** ((math.log(1.0) - a) / b),
            "p80": 2.0 ** ((math.log(4.0) - a) / b),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
