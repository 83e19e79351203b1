#!/usr/bin/env bash
# Every GPU check of rdbench, in one run, on a GPU machine without a Rust toolchain.
# Build first, elsewhere: scripts/build-gpu-bundle.sh (gives gpu-bundle/), then on the GPU machine:
#   OUT=/some/dir scripts/gpu-check.sh
# For every kernel task of the registry (`rdbench --json list`): calibrate (3 separate-process
# runs per solution); score the starting, reference and fastest solutions three times each as
# separate processes; a wrong, a crashing and a hanging submission, each followed by a good
# score in the same attempt; `check-task` (the conformance kit and the whole exploit corpus,
# on the GPU). Then doctor and the bundled test binaries with RDBENCH_REQUIRE_GPU=1, so a test
# that would skip without a GPU fails instead. Everything lands as JSON under $OUT (one folder
# per task); summary.json and a table close it. It never changes clocks or any setting of the card.
# Sizing for a lent device (10 min a call, about 15 min a session): the registry has 8 kernel
# tasks (prefix-sum, six ops, cuda-backtest) and a full run of all of them does not fit. A first
# call of `TASKS=prefix-sum` (about 5-8 min at PROFILE=full, estimated) is the priority; then
# `PROFILE=tiny TASKS="ops-gemm cuda-backtest"` or similar; DEADLINE_S (default 520 s) stops
# starting steps in time anyway and lists what it skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
BUNDLE=${BUNDLE:-$REPO/gpu-bundle}
OUT=${OUT:-$REPO/gpu-check-out}
PROFILE=${PROFILE:-full}
HANG_TIMEOUT=${HANG_TIMEOUT:-30}
# A device call is limited (10 min a command, 15 min a session): past this many seconds no
# new step starts, and the ones left are listed in $OUT/skipped.txt. TASKS narrows the run to
# some kernel tasks (default: every kernel task of the registry, in registry order).
DEADLINE_S=${DEADLINE_S:-520}
mkdir -p "$OUT"
export RDBENCH_HOME="$OUT/home"
export RDBENCH_SHIPPED_CALIBRATION="$OUT/no-shipped"   # measure here, reuse nothing
export RDBENCH_REQUIRE_GPU=1
RD="$BUNDLE/rdbench"
[ -x "$RD" ] || { echo "missing $RD: run scripts/build-gpu-bundle.sh on the build machine and carry gpu-bundle" >&2; exit 2; }

# Prefer the machine's own NVRTC (it matches the driver); else the pip one, if any.
if [ -z "${RDBENCH_NVRTC:-}" ]; then
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
        f=$(ls "$d"/libnvrtc.so.* 2>/dev/null | grep -v builtins | head -1)
        [ -n "$f" ] && export RDBENCH_NVRTC="$f" && break
    done
fi

step() { echo "== [${SECONDS}s] $*" >&2; }
in_time() { # step name -> true while there is time for it, else records it as skipped
    if [ "$SECONDS" -lt "$DEADLINE_S" ]; then return 0; fi
    echo "$*" >> "$OUT/skipped.txt"
    return 1
}
timed() { # out-prefix command... : runs it, stdout to <prefix>.json, stderr to .err, rc and wall to .rc.json
    local out=$1; shift
    local t0=$(date +%s.%N)
    "$@" > "$out.json" 2> "$out.err"
    local rc=$?
    echo "{\"rc\": $rc, \"wall_s\": $(awk "BEGIN{print $(date +%s.%N) - $t0}")}" > "$out.rc.json"
}

step "doctor"
"$RD" --json doctor > "$OUT/doctor.json" 2> "$OUT/doctor.err"
nvidia-smi -q > "$OUT/nvidia-smi.txt" 2>&1 || true

TASKS=${TASKS:-$("$RD" --json list | python3 -c 'import json, sys; print(" ".join(t["name"] for t in json.load(sys.stdin) if t["submission"] == "kernel"))')}
echo "$TASKS" > "$OUT/kernel-tasks.txt"
for T in $TASKS; do
    O="$OUT/$T"
    mkdir -p "$O/attempts" "$O/solutions"
    in_time "$T: everything" || continue
    step "$T: calibrate ($PROFILE)"
    timed "$O/calibrate" "$RD" --json calibrate --task "$T" --profile "$PROFILE" --runs 3

    attempt() { # name what -> prints an attempt dir holding solution `what`; fails if it has none
        local dir="$O/attempts/$1"
        "$RD" start "$T" --dir "$dir" --profile "$PROFILE" --agent gpu-check > /dev/null 2>> "$O/start.err" || return 1
        "$RD" install-solution "$T" "$2" --dir "$dir" --profile "$PROFILE" > /dev/null 2>> "$O/start.err" || return 1
        echo "$dir"
    }
    for sol in start reference fastest; do
        "$RD" install-solution "$T" "$sol" --dir "$O/solutions/$sol" --profile "$PROFILE" > /dev/null 2>&1 || continue
        for i in 1 2 3; do
            in_time "$T: score $sol $i" || continue
            step "$T: score $sol, process $i"
            dir=$(attempt "$sol-$i" "$sol") || continue
            timed "$O/score-$sol-$i" "$RD" --json score "$dir"
        done
    done
    for bad in wrong crash hang; do
        in_time "$T: $bad then good" || continue
        step "$T: score the $bad submission, then a good one in the same attempt"
        dir=$(attempt "$bad" "exploit:$bad") || continue
        timed "$O/score-$bad" "$RD" --json score "$dir" --timeout "$HANG_TIMEOUT"
        "$RD" install-solution "$T" reference --dir "$dir" --profile "$PROFILE" > /dev/null 2>&1
        timed "$O/score-$bad-then-good" "$RD" --json score "$dir"
        "$RD" --json log "$dir" > "$O/log-$bad.json" 2>&1
    done
    in_time "$T: check-task" && step "$T: check-task ($PROFILE) on the GPU" &&
    timed "$O/check-task" "$RD" --json check-task "$T" --profile "$PROFILE"
    # One scoring run's NVML timeline, for the record.
    cp "$(ls "$RDBENCH_HOME"/attempts/*/timelines/score-*.jsonl 2>/dev/null | head -1)" "$O/timeline-example.jsonl" 2>/dev/null || true
    cp "$(ls -t "$RDBENCH_HOME"/attempts/*/samples/*.json 2>/dev/null | head -1)" "$O/samples-example.json" 2>/dev/null || true
done

for t in "$BUNDLE"/tests/*; do
    name=$(basename "$t")
    in_time "test binary $name" || continue
    step "test binary $name"
    RDBENCH_BIN="$RD" RDBENCH_REPO="$REPO" timeout 300 "$t" --test-threads=1 > "$OUT/test-$name.log" 2>&1
    echo "{\"rc\": $?}" > "$OUT/test-$name.rc.json"
done

python3 "$REPO/scripts/gpu_check_summary.py" "$OUT"
