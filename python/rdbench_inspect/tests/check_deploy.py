"""Checks the sandbox configurations the package ships (no docker or k8s here: their keys).

The compose files and the k8s values are loaded with a YAML parser and the keys the trust
model rests on are checked: no network, the platform as root (the agent's commands run as its
own user through exec), one GPU reserved in the GPU sandbox, the image the Dockerfile builds,
with the agent's user, the private scoring binary and the entrypoint that serves as the
scoring user. Prints one line per file; exits 1 naming the first key that is wrong.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

import rdbench_inspect
from rdbench_inspect.task import SANDBOXES

DEPLOY = Path(rdbench_inspect.__file__).parent / "deploy"
IMAGE = "rdbench-inspect:latest"


def check(condition: bool, file: str, what: str) -> None:
    if not condition:
        print(f"{file}: {what}", file=sys.stderr)
        sys.exit(1)


def load(name: str) -> dict:
    path = DEPLOY / name
    check(path.is_file(), name, "missing from the installed package")
    return yaml.safe_load(path.read_text())


def main() -> None:
    cpu = load("compose-cpu.yaml")["services"]["default"]
    check(cpu.get("network_mode") == "none", "compose-cpu.yaml", "network_mode is not none")
    check(cpu.get("user") == "root", "compose-cpu.yaml", "the platform's user is not root")
    check(cpu.get("image") == IMAGE and cpu.get("x-local") is True, "compose-cpu.yaml",
          f"not the local image {IMAGE}")
    check("deploy" not in cpu, "compose-cpu.yaml", "the CPU sandbox reserves devices")
    print("compose-cpu.yaml: network none, user root, local image")

    gpu = load("compose.yaml")["services"]["default"]
    check(gpu.get("extends") == {"file": "compose-cpu.yaml", "service": "default"},
          "compose.yaml", "does not extend the CPU sandbox")
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    check(devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}],
          "compose.yaml", f"not one NVIDIA GPU reserved: {devices}")
    check(gpu.get("image") == IMAGE and gpu.get("x-local") is True, "compose.yaml",
          f"not the local image {IMAGE}")
    print("compose.yaml: the CPU sandbox and one NVIDIA GPU")

    values = load("values.yaml")
    k8s = values["services"]["default"]
    check(values.get("allowDomains") == [], "values.yaml", "egress is allowed")
    check(k8s["securityContext"]["runAsUser"] == 0, "values.yaml", "the platform is not root")
    check(k8s["resources"]["limits"]["nvidia.com/gpu"] == 1, "values.yaml", "not one GPU")
    check(k8s["command"] == ["/usr/local/libexec/rdbench-entrypoint"], "values.yaml",
          "does not start the service")
    print("values.yaml: no egress, root platform, one GPU, the entrypoint")

    docker = (DEPLOY / "Dockerfile").read_text()
    for needed in [
        "useradd --uid 1000 --user-group --create-home --shell /bin/bash agent",
        "chown root:rdbench /usr/local/libexec/rdbench && chmod 0750 /usr/local/libexec/rdbench",
        'ENTRYPOINT ["/usr/local/libexec/rdbench-entrypoint"]',
    ]:
        check(needed in docker, "Dockerfile", f"lacks {needed!r}")
    entry = (DEPLOY / "entrypoint.sh").read_text()
    check("runuser -u rdbench --" in entry and "serve --socket /run/rdbench/score.sock" in entry,
          "entrypoint.sh", "does not serve as the scoring user")
    print("Dockerfile, entrypoint.sh: agent uid 1000, private binary, served as rdbench")

    for kind, ((cpu_file, gpu_file), user, workdir) in SANDBOXES.items():
        for name in filter(None, (cpu_file, gpu_file)):
            check((DEPLOY / name).is_file(), name, f"named by sandbox={kind} but not shipped")
        check(kind == "local" or user == "agent", "task.py", f"{kind}'s agent is not `agent`")
    print("task.py: every sandbox's file is shipped")


if __name__ == "__main__":
    main()
