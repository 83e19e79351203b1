"""Inspect AI tasks for rdbench: `inspect eval rdbench_inspect/rdbench -T task=... -T profile=...`.

The agent works in its own Unix user's attempt folder with bash and Python, and scores through
rdbench's protected service (`score`, `score_log`); the final scorer seals the attempt and
reports rdbench's own final score. See README.md.
"""

from .client import Deployment, RdbenchEnvironmentError, RdbenchUsageError
from .sandbox import AgentUserLocalSandbox
from .scorer import rdbench_score
from .task import rdbench, start_attempt
from .tools import score, score_log

__all__ = [
    "AgentUserLocalSandbox",
    "Deployment",
    "RdbenchEnvironmentError",
    "RdbenchUsageError",
    "rdbench",
    "rdbench_score",
    "score",
    "score_log",
    "start_attempt",
]
