"""`rdbench_local`: Inspect's local sandbox, where `exec(user=...)` runs as that user.

Inspect's own local sandbox refuses any user but its own (`SandboxUserUnsupportedError`), so
the agent's tools (`bash(user=AGENT)`, `python(user=AGENT)`) could only run as the Inspect
process: as root, in a protected deployment, which must never happen. This one wraps the
command in `runuser -u USER -- env -i ...`: the agent's own uid and a clean environment (the
Inspect process's holds model API keys), starting in the folder the task names (the agent's
working folder: the sandbox's config) rather than the sandbox's private temporary folder.

For tests and single-machine runs; docker and k8s sandboxes run users natively.
"""

from __future__ import annotations

import os
import pwd

from inspect_ai.util import (
    SandboxEnvironment,
    SandboxEnvironmentConfigType,
    SandboxUserUnsupportedError,
    sandboxenv,
)
from inspect_ai.util._sandbox.local import LocalSandboxEnvironment
from inspect_ai.util._subprocess import ExecResult

from .client import as_user


@sandboxenv(name="rdbench_local")
class AgentUserLocalSandbox(LocalSandboxEnvironment):
    """The local sandbox, running `exec(user=...)` as that user (root required)."""

    agent_cwd: str = "/"

    @classmethod
    async def sample_init(
        cls,
        task_name: str,
        config: SandboxEnvironmentConfigType | None,
        metadata: dict[str, str],
    ) -> dict[str, SandboxEnvironment]:
        box = cls()
        if isinstance(config, str) and config:
            box.agent_cwd = config
        return {"default": box}

    async def exec(
        self,
        cmd: list[str],
        input: str | bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: int | None = None,
        timeout_retry: bool = True,
        concurrency: bool = True,
    ) -> ExecResult[str]:
        if user is not None and user != pwd.getpwuid(os.geteuid()).pw_name:
            try:
                account = pwd.getpwnam(user)
            except KeyError:
                raise SandboxUserUnsupportedError(f"no user {user!r} on this machine") from None
            home = account.pw_dir if os.path.isdir(account.pw_dir) else self.agent_cwd
            session = {"HOME": home, "USER": user, "LOGNAME": user, **(env or {})}
            cmd = as_user(user, cmd, session)
            cwd = cwd or self.agent_cwd
            env = None
        return await super().exec(
            cmd,
            input=input,
            cwd=cwd,
            env=env,
            user=None,
            timeout=timeout,
            timeout_retry=timeout_retry,
            concurrency=concurrency,
        )
