"""Calls to `rdbench-client` inside the sample's sandbox, as the platform or as the agent.

The Inspect process is the platform (an rdbench operator): its commands run as the sandbox's
own user (root, or the scoring user). The agent's commands (`score`, `log`) run as the agent's
Unix user, so the scoring service sees the agent's uid: the platform's shell starts them under
`runuser -u AGENT -- env -i ...`, with a clean environment.

Replies are read from files, never from exec's output (which Inspect may truncate): the
platform makes a private folder (`mktemp -d`, 0700, its own), opens the reply files there
itself and lets the command write to them through the inherited descriptors. The agent can
neither name nor replace those files, so the platform never reads a path the agent chose.

rdbench's exit codes: 0 done (scored), 1 submission invalid (a logged invalid entry), 2 usage
or input error, 3 environment error. Exit 3, and anything that is not an rdbench reply (a
missing client, a timeout), raise `RdbenchEnvironmentError`: the sample failed through no fault
of the agent's and can be retried (`inspect eval --retry-on-error`).
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from typing import Any

from inspect_ai.util import sandbox

EXIT_DONE = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3

# The agent's PATH: the system's, where the deployment installs `rdbench-client`.
AGENT_PATH = "/usr/local/bin:/usr/bin:/bin"

# What the platform's shell runs: the command's output into the reply files of the private
# folder ($1), which the shell opens itself before the command (maybe as the agent) starts.
_CAPTURE = 'out="$1"; shift; exec "$@" >"$out/stdout" 2>"$out/stderr"'


class RdbenchEnvironmentError(RuntimeError):
    """rdbench said environment error (exit 3), or gave no reply at all: retry the sample."""


class RdbenchUsageError(RuntimeError):
    """rdbench refused the command as given (exit 2): one line saying why."""


@dataclass(frozen=True)
class Deployment:
    """Where rdbench is in the sample's sandbox, and who the agent is there."""

    client: str = "rdbench-client"
    """`rdbench-client` as the sandbox finds it (a path, or a name on its PATH)."""

    socket: str = "/run/rdbench/score.sock"
    """The scoring service's socket in the sandbox."""

    agent_user: str | None = None
    """The agent's Unix user; None only where the sandbox's user is the agent (same-user
    mode, which protects nothing)."""

    sandbox_name: str | None = None
    """The sandbox environment (None: the sample's default)."""

    @staticmethod
    def from_options(
        client: str | None, socket: str | None, agent_user: str | None
    ) -> "Deployment":
        """Task options first, then `$RDBENCH_CLIENT` / `$RDBENCH_SOCKET`, then the defaults."""
        return Deployment(
            client=client or os.environ.get("RDBENCH_CLIENT") or Deployment.client,
            socket=socket or os.environ.get("RDBENCH_SOCKET") or Deployment.socket,
            agent_user=agent_user or None,
        )

    def client_command(self, args: list[str]) -> list[str]:
        return [self.client, "--socket", self.socket, "--json", *args]

    def as_agent(self, command: list[str]) -> list[str]:
        """`command` as the agent's user, in a clean environment."""
        if self.agent_user is None:
            return command
        return as_user(self.agent_user, command)


def as_user(user: str, command: list[str], env: dict[str, str] | None = None) -> list[str]:
    """`command` as `user` (the caller is root), in an environment of `PATH`, `LANG` and `env`
    only: never the platform's, which holds model API keys."""
    clean = {"PATH": AGENT_PATH, "LANG": "C.UTF-8", **(env or {})}
    return ["runuser", "-u", user, "--", "env", "-i", *(f"{k}={v}" for k, v in clean.items()), *command]


@dataclass
class Reply:
    """One command's exit code and output, read back from the private folder."""

    command: list[str]
    code: int
    stdout: str
    stderr: str
    files: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The JSON document on stdout (rdbench's `--json`)."""
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError as e:
            raise RdbenchEnvironmentError(
                f"{shlex.join(self.command)}: exit {self.code}, not a JSON reply ({e}): "
                f"{self.message()}"
            ) from None

    def message(self) -> str:
        """What the command said on stderr, briefly (rdbench's errors are one line)."""
        text = self.stderr.strip() or self.stdout.strip()
        return text[-2000:] if text else "(no output)"


async def run_captured(
    deployment: Deployment,
    command: list[str],
    *,
    as_agent: bool,
    timeout: int,
    extra_files: tuple[str, ...] = (),
) -> Reply:
    """Runs `command` in the sandbox (as the agent where `as_agent`), its stdout and stderr
    going to files in a fresh private folder of the platform's; returns them. `extra_files`
    names more files a platform's command writes there (`{private}` in its arguments is that
    folder; never in an agent's, whose arguments may carry the model's text). Never retried on
    a timeout: a scoring call is not idempotent."""
    box = sandbox(deployment.sandbox_name)
    made = await box.exec(["mktemp", "-d"], timeout=60)
    private = made.stdout.strip()
    if not made.success or not private.startswith("/"):
        raise RdbenchEnvironmentError(f"mktemp -d in the sandbox failed: {made.stderr}")
    try:
        if as_agent:
            command = deployment.as_agent(command)
        else:
            command = [part.replace("{private}", private) for part in command]
        try:
            result = await box.exec(
                ["sh", "-c", _CAPTURE, "sh", private, *command],
                cwd="/",  # a folder every user may be in
                timeout=timeout,
                timeout_retry=False,
            )
        except TimeoutError:
            raise RdbenchEnvironmentError(
                f"{shlex.join(command)}: no reply within {timeout} s"
            ) from None
        stdout = await box.read_file(f"{private}/stdout")
        stderr = await box.read_file(f"{private}/stderr")
        files = {}
        for name in extra_files:
            try:
                files[name] = await box.read_file(f"{private}/{name}")
            except FileNotFoundError:
                pass
        return Reply(command, result.returncode, stdout, stderr, files)
    finally:
        await box.exec(["rm", "-rf", "--", private], timeout=60)


async def rdbench(
    deployment: Deployment,
    args: list[str],
    *,
    as_agent: bool,
    timeout: int,
    extra_files: tuple[str, ...] = (),
) -> Reply:
    """`rdbench-client --json ARGS` through the service. Exit 3 and a missing or dead client
    raise `RdbenchEnvironmentError`; exit 2 raises `RdbenchUsageError`; 0 and 1 come back."""
    reply = await run_captured(
        deployment,
        deployment.client_command(args),
        as_agent=as_agent,
        timeout=timeout,
        extra_files=extra_files,
    )
    if reply.code in (EXIT_DONE, EXIT_INVALID):
        return reply
    if reply.code == EXIT_USAGE:
        raise RdbenchUsageError(reply.message())
    raise RdbenchEnvironmentError(
        f"{shlex.join(reply.command)}: exit {reply.code}: {reply.message()}"
    )
