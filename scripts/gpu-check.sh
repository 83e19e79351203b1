#!/usr/bin/env bash
# Every GPU check of rdbench, in one run, on a GPU machine without a Rust toolchain.
# Build first, elsewhere: scripts/build-gpu-bundle.sh (gives gpu-bundle/), then on the GPU machine:
#   OUT=/some/dir scripts/gpu-check.sh
# It runs: doctor; calibrate prefix-sum (3 separate-process runs per solution); the starting,
# reference and fastest solutions scored three times each as separate processes; a wrong, a
# crashing and a hanging submission, each followed by a good score in the same attempt; and the
# bundled test binaries. Everything lands as JSON under $OUT; summary.json and a table close it.
# It never changes clocks or any setting of the card.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
BUNDLE=${BUNDLE:-$REPO/gpu-bundle}
OUT=${OUT:-$REPO/gpu-check-out}
PROFILE=${PROFILE:-full}
HANG_TIMEOUT=${HANG_TIMEOUT:-30}
mkdir -p "$OUT/attempts"
export RDBENCH_HOME="$OUT/home"
export RDBENCH_SHIPPED_CALIBRATION="$OUT/no-shipped"   # measure here, reuse nothing
RD="$BUNDLE/rdbench"
[ -x "$RD" ] || { echo "missing $RD: run scripts/build-gpu-bundle.sh on the build machine and carry gpu-bundle" >&2; exit 2; }

# Prefer the machine's own NVRTC (it matches the driver); else the pip one, if any.
if [ -z "${RDBENCH_NVRTC:-}" ]; then
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
        f=$(ls "$d"/libnvrtc.so.* 2>/dev/null | grep -v builtins | head -1)
        [ -n "$f" ] && export RDBENCH_NVRTC="$f" && break
    done
fi

step() { echo "== $*" >&2; }
step "doctor"
"$RD" --json doctor > "$OUT/doctor.json" 2> "$OUT/doctor.err"
nvidia-smi -q > "$OUT/nvidia-smi.txt" 2>&1 || true

step "calibrate prefix-sum ($PROFILE)"
start=$(date +%s.%N)
"$RD" --json calibrate --task prefix-sum --profile "$PROFILE" --runs 3 > "$OUT/calibrate.json" 2> "$OUT/calibrate.err"
rc=$?
echo "{\"rc\": $rc, \"wall_s\": $(awk "BEGIN{print $(date +%s.%N) - $start}")}" > "$OUT/calibrate.rc.json"

new_attempt() { # name files-dir -> prints attempt dir
    local dir="$OUT/attempts/$1"
    "$RD" start prefix-sum --dir "$dir" --profile "$PROFILE" --agent gpu-check > /dev/null 2>> "$OUT/start.err"
    cp "$2/solution.cu" "$2/launch.toml" "$dir/"
    echo "$dir"
}
score() { # dir label [extra args]
    local dir=$1 label=$2; shift 2
    local t0=$(date +%s.%N)
    "$RD" --json score "$dir" "$@" > "$OUT/score-$label.json" 2> "$OUT/score-$label.err"
    local rc=$?
    echo "{\"rc\": $rc, \"wall_s\": $(awk "BEGIN{print $(date +%s.%N) - $t0}")}" > "$OUT/score-$label.rc.json"
}

declare -A SRC=(
    [start]="$REPO/kernels/prefix_sum/start"
    [reference]="$REPO/reference_solutions/prefix-sum/reference"
    [fastest]="$REPO/reference_solutions/prefix-sum/fastest"
)
for sol in start reference fastest; do
    for i in 1 2 3; do
        step "score $sol, process $i"
        score "$(new_attempt "$sol-$i" "${SRC[$sol]}")" "$sol-$i"
    done
done

for bad in wrong crash hang; do
    step "score the $bad submission, then a good one in the same attempt"
    dir=$(new_attempt "$bad" "$REPO/tests/exploits/prefix-sum/$bad")
    score "$dir" "$bad" --timeout "$HANG_TIMEOUT"
    cp "${SRC[reference]}/solution.cu" "${SRC[reference]}/launch.toml" "$dir/"
    score "$dir" "$bad-then-good"
    "$RD" --json log "$dir" > "$OUT/log-$bad.json" 2>&1
done

# The attempt's timelines (NVML samples) of one scoring run, for the record.
cp "$(ls "$RDBENCH_HOME"/attempts/*/timelines/score-*.jsonl 2>/dev/null | head -1)" "$OUT/timeline-example.jsonl" 2>/dev/null || true

for t in "$BUNDLE"/tests/*; do
    name=$(basename "$t")
    step "test binary $name"
    RDBENCH_BIN="$RD" RDBENCH_REPO="$REPO" timeout 300 "$t" --test-threads=1 > "$OUT/test-$name.log" 2>&1
    echo "{\"rc\": $?}" > "$OUT/test-$name.rc.json"
done

python3 "$REPO/scripts/gpu_check_summary.py" "$OUT"
