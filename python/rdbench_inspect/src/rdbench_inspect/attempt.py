"""The sample's rdbench attempt: started by the platform before the agent runs, kept in the
sample's store, finished by the scorer.

Everything here is the platform's (an rdbench operator): `start ... --owner AGENT` makes the
folder and its files as the agent; only the attempt's id is kept, and later commands name the
attempt by id (through the service an operator never names an agent's folder, which the agent
controls).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import asdict, dataclass

from inspect_ai.util import store

from .client import Deployment, RdbenchEnvironmentError, rdbench, run_captured

_STORE_KEY = "rdbench_inspect:attempt"

# How long the platform's own commands (start, finish, log) may take: start prepares the task
# (fix-embedding's first start trains models), finish only seals.
PLATFORM_TIMEOUT_S = 3600


@dataclass(frozen=True)
class AttemptRecord:
    """What the sample keeps of its attempt (JSON in the sample's store)."""

    id: str
    task: str
    profile: str
    dir: str
    time_limit_minutes: float | None
    deployment: dict

    def deployment_(self) -> Deployment:
        return Deployment(**self.deployment)


def current() -> AttemptRecord:
    """The sample's attempt; an environment error if the setup never started one."""
    saved = store().get(_STORE_KEY)
    if saved is None:
        raise RdbenchEnvironmentError(
            "no rdbench attempt in this sample: the task's setup (start_attempt) did not run"
        )
    return AttemptRecord(**saved)


async def start(
    deployment: Deployment,
    *,
    task: str,
    profile: str,
    workdir: str,
    time_limit_minutes: float | None,
    agent_name: str,
) -> tuple[AttemptRecord, str]:
    """Starts the attempt for the agent's user in a fresh folder under `workdir`; returns it
    and its INSTRUCTIONS.md (read as the agent: the folder is the agent's)."""
    folder = f"{workdir.rstrip('/')}/{task}-{uuid.uuid4().hex[:12]}"
    args = ["start", task, "--dir", folder, "--profile", profile, "--agent", agent_name]
    if time_limit_minutes is not None:
        args += ["--time-limit", _minutes(time_limit_minutes)]
    if deployment.agent_user is not None:
        args += ["--owner", deployment.agent_user]
    started = (
        await rdbench(deployment, args, as_agent=False, timeout=PLATFORM_TIMEOUT_S)
    ).json()
    record = AttemptRecord(
        id=started["id"],
        task=task,
        profile=profile,
        dir=folder,
        time_limit_minutes=started.get("time_limit_minutes"),
        deployment=asdict(deployment),
    )
    store().set(_STORE_KEY, asdict(record))
    instructions = await run_captured(
        deployment,
        ["cat", "--", f"{folder}/INSTRUCTIONS.md"],
        as_agent=True,
        timeout=60,
    )
    if instructions.code != 0:
        raise RdbenchEnvironmentError(
            f"{folder}/INSTRUCTIONS.md: {instructions.message()}"
        )
    return record, instructions.stdout


def _minutes(value: float) -> str:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"time_limit must be a positive number of minutes, not {value}")
    return repr(float(value))
