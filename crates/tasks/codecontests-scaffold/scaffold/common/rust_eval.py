"""A copy of the scorer's Rust evaluator for the scaffold's own use (codecontests-scaffold).

The scorer compiles the program you print with `rustc --edition 2021 -O` (std only, one file,
10 s) and runs every test with 2 s each, comparing stdout with the expected output after
trimming white space at both ends. This module does the same for the tests a scaffold sees (the
public ones), so a scaffold can filter candidates before it answers. It is yours: change it
as you like. The scorer never runs it; its verdict comes from its own evaluator.

    result = evaluate(source, problem["public_tests"])
    result["succeeded"]  # compiled, and every given test passed
"""

import os
import subprocess
import tempfile

COMPILE_TIMEOUT_S = 10.0
TEST_TIMEOUT_S = 2.0


def compile_rust(source: str, workdir: str):
    """Compiles `source`; returns (path of the binary or None, compiler's stderr)."""
    src = os.path.join(workdir, "solution.rs")
    binary = os.path.join(workdir, "solution")
    with open(src, "w") as f:
        f.write(source)
    try:
        done = subprocess.run(
            ["rustc", "--edition", "2021", "-O", "--crate-type", "bin", "-o", binary, src],
            capture_output=True,
            text=True,
            timeout=COMPILE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return None, "compile timed out"
    if done.returncode != 0:
        return None, done.stderr[-4000:]
    return binary, ""


def run_test(binary: str, given: str, expected: str) -> bool:
    """Whether the program prints `expected` (trimmed) for input `given` within the limit."""
    try:
        done = subprocess.run(
            [binary], input=given, capture_output=True, text=True, timeout=TEST_TIMEOUT_S
        )
    except (subprocess.TimeoutExpired, UnicodeDecodeError):
        return False
    return done.returncode == 0 and done.stdout.strip() == expected.strip()


def evaluate(source: str, tests: dict) -> dict:
    """Compiles `source` and runs `tests` ({"input": [...], "output": [...]})."""
    with tempfile.TemporaryDirectory() as workdir:
        binary, stderr = compile_rust(source, workdir)
        if binary is None:
            return {"compiled": False, "passed": 0, "total": len(tests["input"]),
                    "succeeded": False, "stderr": stderr}
        passed = sum(
            run_test(binary, i, o) for i, o in zip(tests["input"], tests["output"])
        )
        total = len(tests["input"])
        return {"compiled": True, "passed": passed, "total": total,
                "succeeded": passed == total, "stderr": ""}
