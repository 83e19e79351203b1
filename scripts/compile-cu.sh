#!/usr/bin/env bash
# Compile every .cu of the repo with nvcc for sm_80 and sm_90 (-cubin, into a temp dir) and print
# ptxas resources per kernel (registers, spills, shared memory). Developer tool; the Rust tests
# compile the same files with NVRTC (see also scripts/nvrtc_check.py).
#
# Usage: scripts/compile-cu.sh [FILE.cu ...]      (default: kernels/, reference_solutions/,
#                                                  tests/exploits/)
# A file whose folder has an expect.toml with stage = "compile" is expected to fail; as nvcc sees
# host headers that NVRTC lacks, such a file compiling here is only noted (scripts/nvrtc_check.py
# is the check that counts). Any other file must compile with no warnings and no spills.
# A file whose first line is `// rdbench-prelude: <repo path>` is compiled after that file,
# followed the same way (as scripts/nvrtc_check.py does, at most 8 deep).
# Exit status 0 when all is as expected.
# nvcc is taken from $NVCC, else PATH, else the pip wheel nvidia-cuda-nvcc (nvidia/cu13/bin).
# ARCHS="80 90" overrides the architectures.
set -u
cd "$(dirname "$0")/.."

NVCC_BIN="${NVCC:-}"
if [ -z "$NVCC_BIN" ]; then
    if command -v nvcc >/dev/null 2>&1; then
        NVCC_BIN=$(command -v nvcc)
    else
        base=$(python3 -c "import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))" 2>/dev/null || true)
        for c in "$base"/nvidia/cu13/bin/nvcc "$base"/nvidia/cu12/bin/nvcc "$base"/nvidia/cuda_nvcc/bin/nvcc; do
            [ -x "$c" ] && NVCC_BIN="$c" && break
        done
    fi
fi
[ -n "$NVCC_BIN" ] || { echo "compile-cu: nvcc not found (pip install nvidia-cuda-nvcc, or set NVCC)" >&2; exit 2; }
export PATH="$(dirname "$NVCC_BIN"):$PATH" # ptxas, cudafe++, ... next to nvcc

ARCHS="${ARCHS:-80 90}"
if [ $# -gt 0 ]; then
    FILES=("$@")
else
    mapfile -t FILES < <(find kernels reference_solutions tests/exploits -name '*.cu' 2>/dev/null | sort)
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# with_preludes FILE [DEPTH]: the text FILE is compiled from (its prelude chain, then itself).
with_preludes() {
    local first depth=${2:-0}
    [ "$depth" -lt 8 ] || { echo "compile-cu: prelude chain of $1 loops or is too deep" >&2; return 1; }
    IFS= read -r first < "$1" || true
    case $first in
    "// rdbench-prelude: "*)
        with_preludes "${first#// rdbench-prelude: }" $((depth + 1)) || return 1
        echo ;;
    esac
    cat "$1"
}

echo "nvcc: $NVCC_BIN ($("$NVCC_BIN" --version | tail -1)); archs: $ARCHS"
problems=0
for f in "${FILES[@]}"; do
    must_fail=0
    exp="$(dirname "$f")/expect.toml"
    if [ -f "$exp" ] && grep -Eq '^[[:space:]]*stage[[:space:]]*=[[:space:]]*"compile"' "$exp"; then
        must_fail=1
    fi
    src="$f"
    if head -1 "$f" | grep -q '^// rdbench-prelude: '; then
        src="$TMP/$(basename "$f")"
        if ! with_preludes "$f" > "$src"; then
            echo "FAILED (its preludes)   $f"
            problems=$((problems + 1))
            continue
        fi
    fi
    for a in $ARCHS; do
        log="$TMP/log"
        "$NVCC_BIN" -arch=sm_$a -cubin -std=c++17 -Xptxas -v -o "$TMP/out.cubin" "$src" >"$log" 2>&1
        rc=$?
        if [ $must_fail = 1 ]; then
            if [ $rc -ne 0 ]; then
                echo "ok (fails as expected)  sm_$a  $f"
            else
                # nvcc sees host headers NVRTC lacks (e.g. <cstdio>); NVRTC is the judge here
                echo "nvcc accepts (see nvrtc_check.py)  sm_$a  $f"
            fi
            continue
        fi
        if [ $rc -ne 0 ]; then
            echo "FAILED                  sm_$a  $f"
            sed 's/^/    /' "$log"
            problems=$((problems + 1))
            continue
        fi
        status="ok"
        if grep -qi 'warning' "$log"; then status="WARNINGS"; problems=$((problems + 1)); fi
        if grep -E 'bytes spill (stores|loads)' "$log" | grep -Eqv ' 0 bytes spill stores, 0 bytes spill loads'; then
            status="SPILLS"; problems=$((problems + 1))
        fi
        echo "$status$(printf '%*s' $((24 - ${#status})) '')sm_$a  $f"
        # one line per kernel: name, registers, spills, shared memory
        awk '
            /Compiling entry function/ { match($0, /'"'"'[^'"'"']+'"'"'/); k = substr($0, RSTART + 1, RLENGTH - 2) }
            /spill stores/ { match($0, /[0-9]+ bytes spill stores/); st = substr($0, RSTART, RLENGTH);
                             match($0, /[0-9]+ bytes spill loads/); ld = substr($0, RSTART, RLENGTH) }
            /Used [0-9]+ registers/ { match($0, /Used [0-9]+ registers/); r = substr($0, RSTART + 5, RLENGTH - 15);
                                      sm = "0 bytes smem"; if (match($0, /[0-9]+ bytes smem/)) sm = substr($0, RSTART, RLENGTH);
                                      printf "    %-22s %3s regs  %s, %s  %s\n", k, r, st, ld, sm }
        ' "$log"
        grep -i 'warning' "$log" | sed 's/^/    /'
    done
done
echo "$problems problem(s)"
[ $problems -eq 0 ]
