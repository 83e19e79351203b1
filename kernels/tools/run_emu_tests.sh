#!/usr/bin/env bash
# Runs the prefix-sum kernels on the CPU through cuda_emu.h (no GPU needed): the harness, the
# starting solution, the reference and the fastest, then checks that the run-stage exploits that
# must produce a wrong answer (or modify their input) do so under the emulator.
# Usage: kernels/tools/run_emu_tests.sh [SIZES...]   (default: a built-in list; ~5-10 min on 2 cores)
# The emulator checks logic (tails, n = 1, index math, look-back protocol), not speed, and
# cannot reproduce GPU-only behaviour (memory ordering, real concurrency, races in general).
set -u
cd "$(dirname "$0")/../.."
CXX="${CXX:-g++}"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
build() { # kind file out
    "$CXX" -std=c++17 -O1 -DSOL_KIND="$1" "-DSOL_FILE=\"$PWD/$2\"" -I kernels/tools \
        kernels/tools/ps_emu_test.cpp -o "$3" 2>"$TMP/build.log" || { cat "$TMP/build.log"; exit 2; }
}
fail=0
run() { # name kind file sizes...
    local name=$1 kind=$2 file=$3; shift 3
    build "$kind" "$file" "$TMP/t"
    if "$TMP/t" "$@" >"$TMP/out.log" 2>&1; then echo "PASS  $name"; else echo "FAIL  $name"; tail -5 "$TMP/out.log"; fail=1; fi
}
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1 2 3 31 32 33 129 2047 2048 2049 4097 8191 8192 8193 20000)
run harness 0 kernels/prefix_sum/harness.cu "${SIZES[@]}"
run start 1 kernels/prefix_sum/start/solution.cu "${SIZES[@]}"
run reference 2 reference_solutions/prefix-sum/reference/solution.cu "${SIZES[@]}"
run fastest 3 reference_solutions/prefix-sum/fastest/solution.cu "${SIZES[@]}" 270000
for c in wrong partial-write modifies-input race stale-scratch; do
    build 1 "tests/exploits/prefix-sum/$c/solution.cu" "$TMP/x"
    if "$TMP/x" 5 3000 >"$TMP/out.log" 2>&1; then echo "FAIL  exploit $c was not caught"; fail=1
    else echo "PASS  exploit $c is caught ($(grep -c FAIL "$TMP/out.log") failed checks)"; fi
done
exit $fail
