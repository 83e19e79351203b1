#!/usr/bin/env python3
"""Reads what scripts/gpu-check.sh wrote under OUT, writes OUT/summary.json and prints a table.

Checks (the acceptance criteria of the GPU path): starting scores 0 +- 0.05 and reference
1 +- 0.05; three separate-process scores of one solution agree within 2 %; in-run noise at
most 0.5 %; wrong, crashing and hanging submissions are logged invalid and the next score
works; the NVML timeline has real samples; the fastest version's share of the memory floor.
"""
import glob
import json
import os
import sys

OUT = sys.argv[1]
# Peak DRAM bandwidth by product name (vendor figures), for the memory-floor share.
PEAK_BW = {"H100 80GB HBM3": 3.35e12, "H100 SXM": 3.35e12, "H100 PCIe": 2.0e12, "H100 NVL": 3.9e12, "H200": 4.8e12}


def load(name):
    try:
        with open(os.path.join(OUT, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


summary = {"checks": {}, "solutions": {}}
doctor = load("doctor.json") or {}
gpus = doctor.get("gpus") or []
device = gpus[0]["info"]["name"] if gpus and "info" in gpus[0] else None
summary["device"] = device
summary["driver"] = (doctor.get("nvml") or {}).get("driver_version")
summary["cuda"] = doctor.get("cuda_driver_version")
summary["nvrtc"] = doctor.get("nvrtc_version")
cal = load("calibrate.json")
summary["calibration"] = cal

rows = []
for sol in ("start", "reference", "fastest"):
    runs = [load(f"score-{sol}-{i}.json") for i in (1, 2, 3)]
    ok = [r for r in runs if r and r.get("valid")]
    medians = [r["details"]["median_ms"] for r in ok]
    entry = {
        "valid_runs": len(ok),
        "median_ms": medians,
        "noise": [r["details"]["noise"] for r in ok],
        "samples": [r["details"]["samples"] for r in ok],
        "normalized": [r.get("normalized") for r in ok],
        "bandwidth_gb_s": [r["details"]["effective_bandwidth_gb_s"] for r in ok],
        "sm_clock_mhz": [(r["details"].get("sm_clock_mhz_min"), r["details"].get("sm_clock_mhz_max")) for r in ok],
        "throttle": sorted({t for r in ok for t in r["details"].get("throttle_reasons_seen", [])}),
        "wall_s": [r.get("wall_s") for r in ok],
        "reasons": [r.get("reason") for r in runs if r and not r.get("valid")],
    }
    if medians:
        entry["spread"] = max(medians) / min(medians) - 1
    summary["solutions"][sol] = entry
    rows.append((sol, entry))

c = summary["checks"]
s, r, f = (summary["solutions"][k] for k in ("start", "reference", "fastest"))
c["start_is_0"] = bool(s["normalized"]) and all(n is not None and abs(n) <= 0.05 for n in s["normalized"])
c["reference_is_1"] = bool(r["normalized"]) and all(n is not None and abs(n - 1) <= 0.05 for n in r["normalized"])
c["three_processes_agree_2pct"] = all(e.get("spread", 1) <= 0.02 for e in (s, r, f))
c["noise_at_most_0.5pct"] = all(n <= 0.005 for e in (s, r, f) for n in e["noise"]) and bool(s["noise"])
for bad, want in (("wrong", "wrong output"), ("crash", "illegal memory access"), ("hang", "time limit")):
    res = load(f"score-{bad}.json") or {}
    nxt = load(f"score-{bad}-then-good.json") or {}
    c[f"{bad}_logged_invalid"] = res.get("valid") is False and want in (res.get("reason") or "")
    c[f"{bad}_then_next_score_works"] = nxt.get("valid") is True
    summary[f"{bad}_reason"] = res.get("reason")
tl = os.path.join(OUT, "timeline-example.jsonl")
samples = []
if os.path.exists(tl):
    with open(tl) as fh:
        lines = fh.read().splitlines()[1:]
    samples = [json.loads(x) for x in lines if x.strip()]
gpu_samples = [g for smp in samples for g in smp.get("gpus", [])]
c["timeline_has_nvml_samples"] = any(g.get("power_w") is not None and g.get("sm_clock_mhz") for g in gpu_samples)
summary["timeline_gpu_samples"] = len(gpu_samples)
tests = {os.path.basename(p)[5:-8]: (load(os.path.basename(p)) or {}).get("rc") for p in glob.glob(os.path.join(OUT, "test-*.rc.json"))}
summary["tests"] = tests
c["test_binaries_pass"] = bool(tests) and all(v == 0 for v in tests.values())
peak = next((v for k, v in PEAK_BW.items() if device and k in device), None)
if f["median_ms"] and peak:
    n = 100_000_000
    floor_ms = 8 * n / peak * 1e3
    summary["memory_floor_ms"] = floor_ms
    summary["fastest_share_of_floor"] = floor_ms / min(f["median_ms"])

with open(os.path.join(OUT, "summary.json"), "w") as fh:
    json.dump(summary, fh, indent=2)

print(f"device: {device}  driver {summary['driver']}  CUDA {summary['cuda']}  NVRTC {summary['nvrtc']}")
print(f"{'solution':<10} {'median ms (3 processes)':<30} {'noise %':<20} {'normalized':<26} spread")
for sol, e in rows:
    fmt = lambda xs, p: ", ".join(f"{x:.{p}f}" if x is not None else "-" for x in xs)
    print(f"{sol:<10} {fmt(e['median_ms'], 4):<30} {fmt([x * 100 for x in e['noise']], 2):<20} {fmt(e['normalized'], 3):<26} {e.get('spread', float('nan')) * 100:.2f} %")
if "fastest_share_of_floor" in summary:
    print(f"memory floor at n = 1e8: {summary['memory_floor_ms']:.4f} ms; fastest reaches {summary['fastest_share_of_floor'] * 100:.1f} % of it")
for k, v in c.items():
    print(f"{'PASS' if v else 'FAIL'}  {k}")
