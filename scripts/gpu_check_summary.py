#!/usr/bin/env python3
"""Reads what scripts/gpu-check.sh wrote under OUT, writes OUT/summary.json and prints a table.

Checks per kernel task (the acceptance criteria of the GPU path): starting scores 0 +- 0.05 and
reference 1 +- 0.05; three separate-process scores of one solution agree within 2 %; in-run noise
at most 0.5 %; launch latency kept out of every sample; wrong, crashing and hanging submissions
are logged invalid with their kinds and the next score works; check-task passes on the GPU; the
NVML timeline has real samples. The share of speed of light of each solution is reported.
"""
import glob
import json
import os
import sys

OUT = sys.argv[1]


def load(name):
    try:
        with open(os.path.join(OUT, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


summary = {"checks": {}, "tasks": {}}
doctor = load("doctor.json") or {}
gpus = doctor.get("gpus") or []
device = gpus[0]["info"]["name"] if gpus and "info" in gpus[0] else None
summary["device"] = device
summary["driver"] = (doctor.get("nvml") or {}).get("driver_version")
summary["cuda"] = doctor.get("cuda_driver_version")
summary["nvrtc"] = doctor.get("nvrtc_version")
try:
    tasks = open(os.path.join(OUT, "kernel-tasks.txt")).read().split()
except OSError:
    tasks = []
c = summary["checks"]
rows = []
for task in tasks:
    t = {"calibration": load(f"{task}/calibrate.json"), "solutions": {}}
    summary["tasks"][task] = t
    for sol in ("start", "reference", "fastest"):
        runs = [load(f"{task}/score-{sol}-{i}.json") for i in (1, 2, 3)]
        if not any(runs):
            continue
        ok = [r for r in runs if r and r.get("valid")]
        d = lambda r, k: (r.get("details") or {}).get(k)
        medians = [d(r, "median_ms") for r in ok if d(r, "median_ms")]
        e = {
            "valid_runs": len(ok),
            "median_ms": medians,
            "noise": [d(r, "noise") for r in ok],
            "samples": [d(r, "samples") for r in ok],
            "normalized": [r.get("normalized") for r in ok],
            "share_of_speed_of_light": [d(r, "share_of_speed_of_light") for r in ok],
            "speed_of_light_ms": [d(r, "speed_of_light_ms") for r in ok],
            "launch_latency_hidden": [d(r, "launch_latency_hidden") for r in ok],
            "samples_discarded_throttled": [d(r, "samples_discarded_throttled") for r in ok],
            "sm_clock_mhz": [(d(r, "sm_clock_mhz_min"), d(r, "sm_clock_mhz_max")) for r in ok],
            "throttle": sorted({x for r in ok for x in (d(r, "throttle_reasons_seen") or [])}),
            "headline": [r.get("headline") for r in ok],
            "wall_s": [r.get("wall_s") for r in ok],
            "reasons": [r.get("reason") for r in runs if r and not r.get("valid")],
        }
        # Per timed size: (vars, [median per process], [share of speed of light per process]).
        sizes = {}
        for r in ok:
            for sh in d(r, "shapes") or []:
                key = json.dumps(sh.get("vars"), sort_keys=True)
                sizes.setdefault(key, {"vars": sh.get("vars"), "median_ms": [], "share_of_speed_of_light": [], "speedup_vs_start": []})
                for k in ("median_ms", "share_of_speed_of_light", "speedup_vs_start"):
                    sizes[key][k].append(sh.get(k))
        e["sizes"] = list(sizes.values())
        if medians:
            e["spread"] = max(medians) / min(medians) - 1
        t["solutions"][sol] = e
        rows.append((task, sol, e))
    sols = t["solutions"]
    s, r = sols.get("start", {}), sols.get("reference", {})
    c[f"{task}: start_is_0"] = bool(s.get("normalized")) and all(n is not None and abs(n) <= 0.05 for n in s["normalized"])
    c[f"{task}: reference_is_1"] = bool(r.get("normalized")) and all(n is not None and abs(n - 1) <= 0.05 for n in r["normalized"])
    c[f"{task}: three_processes_agree_2pct"] = bool(sols) and all(e.get("spread", 1) <= 0.02 for e in sols.values())
    c[f"{task}: noise_at_most_0.5pct"] = bool(s.get("noise")) and all(n is not None and n <= 0.005 for e in sols.values() for n in e["noise"])
    c[f"{task}: launch_latency_hidden"] = bool(s.get("launch_latency_hidden")) and all(all(e["launch_latency_hidden"]) for e in sols.values())
    for bad, want in (("wrong", "wrong_output"), ("crash", "kernel_fault"), ("hang", "timeout")):
        res = load(f"{task}/score-{bad}.json")
        if res is None:
            continue
        nxt = load(f"{task}/score-{bad}-then-good.json") or {}
        c[f"{task}: {bad}_logged_invalid_as_{want}"] = res.get("valid") is False and res.get("kind") == want
        c[f"{task}: {bad}_then_next_score_works"] = nxt.get("valid") is True
        t[f"{bad}_reason"] = res.get("reason")
    ct = load(f"{task}/check-task.json") or {}
    t["check_task"] = ct.get("checks")
    c[f"{task}: check_task_passes_on_gpu"] = ct.get("passed") is True
    tl = os.path.join(OUT, task, "timeline-example.jsonl")
    samples = []
    if os.path.exists(tl):
        with open(tl) as fh:
            lines = fh.read().splitlines()[1:]
        samples = [json.loads(x) for x in lines if x.strip()]
    gpu_samples = [g for smp in samples for g in smp.get("gpus", [])]
    c[f"{task}: timeline_has_nvml_samples"] = any(g.get("power_w") is not None and g.get("sm_clock_mhz") for g in gpu_samples)
    t["timeline_gpu_samples"] = len(gpu_samples)
tests = {os.path.basename(p)[5:-8]: (load(os.path.basename(p)) or {}).get("rc") for p in glob.glob(os.path.join(OUT, "test-*.rc.json"))}
summary["tests"] = tests
c["test_binaries_pass"] = bool(tests) and all(v == 0 for v in tests.values())
try:
    summary["skipped_for_time"] = open(os.path.join(OUT, "skipped.txt")).read().splitlines()
except OSError:
    summary["skipped_for_time"] = []

with open(os.path.join(OUT, "summary.json"), "w") as fh:
    json.dump(summary, fh, indent=2)

print(f"device: {device}  driver {summary['driver']}  CUDA {summary['cuda']}  NVRTC {summary['nvrtc']}")
print(f"{'task':<14} {'solution':<10} {'median ms (3 processes)':<30} {'noise %':<20} {'normalized':<22} {'SOL %':<16} spread")
fmt = lambda xs, p: ", ".join(f"{x:.{p}f}" if x is not None else "-" for x in xs)
for task, sol, e in rows:
    sol_pct = [x * 100 if x is not None else None for x in e["share_of_speed_of_light"]]
    noise = [x * 100 if x is not None else None for x in e["noise"]]
    print(f"{task:<14} {sol:<10} {fmt(e['median_ms'], 4):<30} {fmt(noise, 2):<20} {fmt(e['normalized'], 3):<22} {fmt(sol_pct, 0):<16} {e.get('spread', float('nan')) * 100:.2f} %")
print("per timed size (median ms per process; share of speed of light; speed-up over the calibrated start):")
for task, sol, e in rows:
    for sz in e.get("sizes", []):
        vars_ = ", ".join(f"{k}={v}" for k, v in (sz["vars"] or {}).items())
        sol_pct = [x * 100 if x is not None else None for x in sz["share_of_speed_of_light"]]
        print(f"  {task:<14} {sol:<10} {vars_:<28} {fmt(sz['median_ms'], 4):<30} SOL {fmt(sol_pct, 0):<14} x{fmt(sz['speedup_vs_start'], 2)}")
for k, v in c.items():
    print(f"{'PASS' if v else 'FAIL'}  {k}")
for k in summary["skipped_for_time"]:
    print(f"SKIP  {k} (out of time: DEADLINE_S)")
