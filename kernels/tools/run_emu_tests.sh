#!/usr/bin/env bash
# Unit tests of kernel internals on the CPU through cuda_emu.h (no GPU needed): the tile scans
# of the starting and reference solutions past one chunk of tiles, the harness's carry scan,
# and the fastest solution's look-back over every mix of predecessor states. Whole solutions
# and the exploit corpus run through the Rust scorer's emulator backend instead
# (`rdbench check-task prefix-sum`, run by the test suite).
set -u
cd "$(dirname "$0")/../.."
CXX="${CXX:-g++}"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail=0
run() { # name kind file
    if ! "$CXX" -std=c++17 -O1 -DSOL_KIND="$2" "-DSOL_FILE=\"$PWD/$3\"" -I kernels/tools \
        kernels/tools/ps_emu_test.cpp -o "$TMP/t" 2>"$TMP/build.log"; then
        cat "$TMP/build.log"; exit 2
    fi
    if "$TMP/t" >"$TMP/out.log" 2>&1; then echo "PASS  $1"; else echo "FAIL  $1"; tail -5 "$TMP/out.log"; fail=1; fi
}
run harness 0 kernels/prefix-sum/harness.cu
run start 1 kernels/prefix-sum/start/solution.cu
run reference 2 reference_solutions/prefix-sum/reference/solution.cu
run fastest 3 reference_solutions/prefix-sum/fastest/solution.cu
exit $fail
