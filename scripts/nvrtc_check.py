#!/usr/bin/env python3
"""Compile every .cu of the repo with NVRTC (as the scorer does), no GPU needed.

Usage: scripts/nvrtc_check.py [--arch sm_90] [--arch sm_80] [FILE.cu ...]

With no files: every .cu under kernels/, reference_solutions/ and tests/exploits/. A file whose
folder has an expect.toml with stage = "compile" must FAIL to compile; one with kind =
"rule_violation" is skipped (the source rules refuse it before any compiler runs); every other file
must compile with an empty log (no warnings). A file whose first line is
`// rdbench-prelude: <repo path>` is compiled after that file, followed the same way (at most 8
deep, no loops). Options as the scorer: --gpu-architecture=<arch> -std=c++17; a CUBIN is produced
for a real architecture (sm_XX).

libnvrtc.so.13 is looked up in $NVRTC_LIB, then the pip wheel nvidia-cuda-nvrtc
(nvidia/cu13/lib), then the system loader path. Exit status 0 when every file behaves as expected.
"""
import argparse
import ctypes
import glob
import os
import sys

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_nvrtc():
    cands = []
    if os.environ.get("NVRTC_LIB"):
        cands.append(os.environ["NVRTC_LIB"])
    try:
        import nvidia  # type: ignore

        for p in nvidia.__path__:
            cands += sorted(glob.glob(os.path.join(p, "cu1*", "lib", "libnvrtc.so*")), reverse=True)
            cands += sorted(glob.glob(os.path.join(p, "cuda_nvrtc", "lib", "libnvrtc.so*")), reverse=True)
    except ImportError:
        pass
    cands += ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"]
    for c in cands:
        if "builtins" in os.path.basename(c):
            continue
        try:
            return ctypes.CDLL(c), c
        except OSError:
            continue
    sys.exit("nvrtc_check: libnvrtc not found (pip install nvidia-cuda-nvrtc, or set NVRTC_LIB)")


NVRTC, NVRTC_PATH = load_nvrtc()
NVRTC.nvrtcGetErrorString.restype = ctypes.c_char_p


PRELUDE_MARK = b"// rdbench-prelude: "
PRELUDE_DEPTH = 8


def source_of(path, chain=()):
    """The file's text; one whose first line is `// rdbench-prelude: <repo path>` is compiled
    after that file (itself read the same way), as its task crate concatenates the chain (trusted
    code shared between harnesses)."""
    path = os.path.realpath(path)
    if path in chain or len(chain) >= PRELUDE_DEPTH:
        raise ValueError("prelude chain loops or is too deep: "
                         + " -> ".join(os.path.relpath(p, ROOT) for p in chain + (path,)))
    src = open(path, "rb").read()
    first = src.split(b"\n", 1)[0]
    if first.startswith(PRELUDE_MARK):
        prelude = os.path.join(ROOT, first[len(PRELUDE_MARK):].strip().decode())
        src = source_of(prelude, chain + (path,)) + b"\n" + src
    return src


def compile_source(path, arch):
    """Returns (ok, log)."""
    try:
        src = source_of(path)
    except (OSError, ValueError) as e:
        return False, f"reading it and its preludes: {e}"
    prog = ctypes.c_void_p()
    rc = NVRTC.nvrtcCreateProgram(ctypes.byref(prog), ctypes.c_char_p(src),
                                  ctypes.c_char_p(os.path.basename(path).encode()), 0, None, None)
    if rc != 0:
        return False, "nvrtcCreateProgram: " + NVRTC.nvrtcGetErrorString(rc).decode()
    opts = [f"--gpu-architecture={arch}".encode(), b"-std=c++17"]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    rc = NVRTC.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t()
    NVRTC.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    buf = ctypes.create_string_buffer(size.value + 1)
    NVRTC.nvrtcGetProgramLog(prog, buf)
    log = buf.value.decode(errors="replace").strip()
    ok = rc == 0
    if ok and arch.startswith("sm_"):
        csize = ctypes.c_size_t()
        if NVRTC.nvrtcGetCUBINSize(prog, ctypes.byref(csize)) != 0 or csize.value == 0:
            ok, log = False, (log + "\nno CUBIN produced").strip()
    NVRTC.nvrtcDestroyProgram(ctypes.byref(prog))
    return ok, log


def expected(path, key):
    """`key` (stage, kind) of the expect.toml beside an exploit case, or None."""
    exp = os.path.join(os.path.dirname(path), "expect.toml")
    if not os.path.exists(exp):
        return None
    text = open(exp, "rb").read()
    if tomllib is not None:
        return tomllib.loads(text.decode()).get(key)
    for line in text.decode().splitlines():  # minimal fallback
        if line.strip().startswith(key):
            return line.split("=", 1)[1].strip().strip('"')
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", action="append")
    ap.add_argument("files", nargs="*")
    a = ap.parse_args()
    arches = a.arch or ["sm_80", "sm_90"]
    files = a.files or sorted(
        f for d in ("kernels", "reference_solutions", "tests/exploits")
        for f in glob.glob(os.path.join(ROOT, d, "**", "*.cu"), recursive=True))
    ver_major, ver_minor = ctypes.c_int(), ctypes.c_int()
    NVRTC.nvrtcVersion(ctypes.byref(ver_major), ctypes.byref(ver_minor))
    print(f"NVRTC {ver_major.value}.{ver_minor.value} ({NVRTC_PATH}), arches {', '.join(arches)}")
    bad = 0
    for f in files:
        if expected(f, "kind") == "rule_violation":
            # the source rules refuse it before any compiler runs (crates/gpu/tests/compile_all_cu.rs)
            print(f"{'skipped (rule_violation)':24} {os.path.relpath(f, ROOT)}")
            continue
        must_fail = expected(f, "stage") == "compile"
        for arch in arches:
            ok, log = compile_source(f, arch)
            rel = os.path.relpath(f, ROOT)
            if must_fail:
                status = "ok (fails as expected)" if not ok else "UNEXPECTEDLY COMPILED"
                good = not ok
            else:
                good = ok and not log
                status = "ok" if good else ("WARNINGS" if ok else "FAILED")
            print(f"{status:24} {arch}  {rel}")
            if not good:
                bad += 1
            if log and (not good or not must_fail):
                print("    " + log.replace("\n", "\n    "))
    print(f"{bad} problem(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
