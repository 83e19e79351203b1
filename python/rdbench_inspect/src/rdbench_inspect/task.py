"""`rdbench_inspect/rdbench`: one Inspect task per rdbench task and profile.

    inspect eval rdbench_inspect/rdbench -T task=tree-traversal -T profile=tiny --model ...

The sample's input is the attempt's INSTRUCTIONS.md (the setup starts the attempt, then puts
the instructions in the user message). The attempt's time limit is Inspect's `working_limit`;
rdbench's own clock counts wall time, so the attempt is started with the wall-clock limit
(`wall_limit`, also Inspect's `time_limit`), and no entry Inspect lets the agent make is late.
The setup is the task's `setup`, so `--solver` replaces only the agent: any solver that uses
the state's tools gets `score` and `score_log`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import json
from pathlib import Path

from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.solver import Generate, Solver, TaskState, basic_agent, solver
from inspect_ai.tool import bash, python

from . import attempt
from .client import Deployment
from .scorer import rdbench_score
from .tools import score, score_log

DEPLOY = Path(__file__).parent / "deploy"

# Each sandbox kind's configuration (for a CPU task, a GPU task), its agent's user and folder.
SANDBOXES = {
    "docker": (("compose-cpu.yaml", "compose.yaml"), "agent", "/home/agent"),
    "k8s": (("values.yaml", "values.yaml"), "agent", "/home/agent"),
    "local": ((None, None), None, None),
}

PROMPT_PLACEHOLDER = (
    "(the attempt's INSTRUCTIONS.md replaces this when the setup starts the attempt)"
)


@task
def rdbench(
    task: str = "tree-traversal",
    profile: str = "tiny",
    time_limit: float | None = None,
    wall_limit: float | None = None,
    sandbox: str = "docker",
    gpu: bool = False,
    agent_user: str | None = None,
    workdir: str | None = None,
    client: str | None = None,
    socket: str | None = None,
    command_timeout: int = 600,
    message_limit: int = 10_000,
) -> Task:
    """An rdbench task as an Inspect task, scored by rdbench's protected service.

    Args:
      task: the rdbench task (`rdbench-client list`).
      profile: its profile (size).
      time_limit: the agent's working time, minutes (Inspect's `working_limit`) [default:
        the task's, asked of the `rdbench-client` on this machine's PATH].
      wall_limit: the attempt's wall-clock limit, minutes (Inspect's `time_limit` and
        rdbench's `start --time-limit`) [default: twice `time_limit`].
      sandbox: `docker` (the package's compose files), `k8s` (its values.yaml) or `local`
        (this machine: rdbench's service already running, and `agent_user` required as root).
      gpu: reserve one GPU in the docker sandbox (kernel tasks).
      agent_user: the agent's Unix user in the sandbox [default: `agent` in docker and k8s].
      workdir: the folder the attempt's folder is made in, the agent's [default: its home].
      client: `rdbench-client` in the sandbox [default: $RDBENCH_CLIENT, or on the PATH].
      socket: the service's socket in the sandbox [default: $RDBENCH_SOCKET, or
        /run/rdbench/score.sock].
      command_timeout: the agent's bash and python tools' limit per call, seconds.
      message_limit: messages per sample (the working limit is the real budget).
    """
    if sandbox not in SANDBOXES:
        raise ValueError(f"sandbox must be one of {', '.join(SANDBOXES)}, not {sandbox!r}")
    configs, default_user, default_workdir = SANDBOXES[sandbox]
    config = configs[1 if gpu else 0]
    agent_user = agent_user or default_user
    workdir = workdir or default_workdir or _home_of(agent_user)
    if sandbox == "local" and os.geteuid() == 0 and agent_user is None:
        raise ValueError(
            "sandbox=local as root runs the agent's commands as root: name the agent's "
            "user with -T agent_user=USER"
        )
    deployment = Deployment.from_options(client, socket, agent_user)
    working_minutes = time_limit if time_limit is not None else _default_minutes(deployment, task)
    wall_minutes = wall_limit if wall_limit is not None else 2 * working_minutes
    if wall_minutes < working_minutes:
        raise ValueError("wall_limit must be at least time_limit")
    spec = ("rdbench_local", workdir) if sandbox == "local" else (sandbox, str(DEPLOY / config))
    return Task(
        dataset=[
            Sample(
                id=f"{task}-{profile}",
                input=PROMPT_PLACEHOLDER,
                metadata={"task": task, "profile": profile},
            )
        ],
        setup=start_attempt(
            deployment,
            task=task,
            profile=profile,
            workdir=workdir,
            wall_minutes=wall_minutes,
            working_minutes=working_minutes,
        ),
        solver=basic_agent(
            tools=[
                bash(timeout=command_timeout, user=agent_user),
                python(timeout=command_timeout, user=agent_user),
            ],
            message_limit=message_limit,
        ),
        scorer=rdbench_score(),
        sandbox=spec,
        working_limit=round(working_minutes * 60),
        time_limit=round(wall_minutes * 60),
    )


@solver
def start_attempt(
    deployment: Deployment,
    *,
    task: str,
    profile: str,
    workdir: str,
    wall_minutes: float,
    working_minutes: float,
) -> Solver:
    """The platform's setup: starts the sample's attempt for the agent's user, puts its
    instructions in the user message, and gives the agent `score` and `score_log`."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        record, instructions = await attempt.start(
            deployment,
            task=task,
            profile=profile,
            workdir=workdir,
            time_limit_minutes=wall_minutes,
            agent_name=str(state.model)[:128],
        )
        who = f" as the Unix user {deployment.agent_user}" if deployment.agent_user else ""
        state.user_prompt.text = (
            f"{instructions.rstrip()}\n\n"
            f"---\nYour attempt's folder is {record.dir}; your commands run there{who}. "
            "The `score` tool scores the submission in that folder and logs the result "
            "(every call counts towards the final score as the instructions say); "
            "`score_log` lists what is logged. You have "
            f"{working_minutes:g} minutes of working time; every `score` and `score_log` "
            "reply says how much is left. Call `submit` when you are done."
        )
        state.tools.extend([score(), score_log()])
        return state

    return solve


def _home_of(user: str | None) -> str | None:
    if user is None:
        return None
    import pwd

    return pwd.getpwnam(user).pw_dir


def _default_minutes(deployment: Deployment, task: str) -> float:
    """The task's default time limit, from the `rdbench-client` on this machine."""
    client = shutil.which(deployment.client)
    if client is None:
        raise ValueError(
            f"-T time_limit=MINUTES is needed: no {deployment.client} here to ask for "
            f"{task}'s default (`rdbench-client info {task}` says it)"
        )
    out = subprocess.run(
        [client, "--socket", deployment.socket, "--json", "info", task],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0:
        raise ValueError(f"rdbench-client info {task}: {out.stderr.strip() or out.stdout.strip()}")
    return float(json.loads(out.stdout)["task"]["default_time_limit_minutes"])
