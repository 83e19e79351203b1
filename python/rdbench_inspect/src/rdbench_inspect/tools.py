"""The agent's rdbench tools: `score` and `score_log`, run as the agent's user through the
protected service (the agent never runs the scorer; the service does, as its own user).

`score` carries an idempotency key, the model's tool call id, so a call executed twice (a
retried message, a scaffold that replays a turn) is scored and logged once: rdbench answers
the second with the logged entry. Hidden-score tasks show nothing but "recorded", as rdbench
itself answers the agent.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from inspect_ai.tool import Tool, ToolError, tool
from inspect_ai.util import sample_limits, store

from . import attempt
from .client import RdbenchUsageError, rdbench

# Longest scoring call the tool waits for: the service bounds each run by the task's own
# scoring limit and queues GPU runs; a call past this is an environment error.
SCORE_TIMEOUT_S = 3 * 3600
LOG_TIMEOUT_S = 120


def time_left() -> str:
    """The agent's remaining working time, as Inspect counts it (its `working_limit`)."""
    try:
        remaining = sample_limits().working.remaining
    except RuntimeError:
        return ""
    if remaining is None:
        return ""
    return f"\n(working time left: {remaining / 60:.1f} min)"


def _number(value: Any) -> str:
    if isinstance(value, (int, float)) and math.isfinite(value):
        return f"{value:.4f}"
    return "-"


def describe_entry(entry: dict[str, Any]) -> str:
    """One logged entry as the agent reads it (a hidden-score task's carries no score)."""
    late = " (recorded late: it never counts)" if entry.get("late") else ""
    if not entry.get("valid"):
        kind = entry.get("kind")
        reason = entry.get("reason") or "unknown reason"
        return f"INVALID{f' ({kind})' if kind else ''}: {reason}{late}"
    if entry.get("hidden") or (entry.get("raw") is None and not entry.get("unscored")):
        # A hidden-score task: rdbench answers "recorded", and its log blanks the score.
        return f"recorded{late}"
    if entry.get("unscored"):
        return f"CORRECT, NOT SCORED: {entry.get('headline') or ''}{late}"
    headline = entry.get("headline")
    text = f"score {_number(entry.get('normalized'))} (raw {_number(entry.get('raw'))})"
    if headline:
        text += f": {headline}"
    return text + late


def _call_key(function: str) -> str:
    """The model's id of the tool call being executed: the last assistant message's calls to
    `function`, in order of execution (a replay of a one-call message gets the same id). A
    fresh random key where no sample state is at hand (a solver calling the tool directly)."""
    try:
        from inspect_ai.solver._task_state import sample_state
    except ImportError:  # pragma: no cover - Inspect moved it
        sample_state = None
    state = sample_state() if sample_state else None
    message = next(
        (m for m in reversed(state.messages) if m.role == "assistant"), None
    ) if state else None
    calls = [c for c in (getattr(message, "tool_calls", None) or []) if c.function == function]
    if not calls:
        return f"inspect-{uuid.uuid4().hex}"
    counter = f"rdbench_inspect:calls:{message.id}:{function}"
    executed = store().get(counter, 0)
    store().set(counter, executed + 1)
    return calls[executed % len(calls)].id[: 128]


@tool(parallel=False)
def score() -> Tool:
    async def execute() -> str:
        """Score your current submission in the attempt's folder with rdbench's scorer.

        Every call is logged; the final score is chosen from the log when the attempt ends
        (the best entry, or for a hidden-score task the last valid one). The reply is the
        score (0 = the starting solution, 1 = the reference), or why the submission is
        invalid.

        Returns:
          The logged entry, and the working time left.
        """
        record = attempt.current()
        try:
            reply = await rdbench(
                record.deployment_(),
                ["score", record.id, "--key", _call_key("score")],
                as_agent=True,
                timeout=SCORE_TIMEOUT_S,
            )
        except RdbenchUsageError as e:
            raise ToolError(str(e)) from None
        return describe_entry(reply.json()) + time_left()

    return execute


@tool
def score_log() -> Tool:
    async def execute() -> str:
        """Show this attempt's score log: every scoring call so far, whether it counts, and
        whether the log's chain is intact.

        Returns:
          One line per entry, then the chain's verdict and the working time left.
        """
        record = attempt.current()
        try:
            reply = await rdbench(
                record.deployment_(),
                ["log", record.id],
                as_agent=True,
                timeout=LOG_TIMEOUT_S,
            )
        except RdbenchUsageError as e:
            raise ToolError(str(e)) from None
        log = reply.json()
        lines = [
            f"{n}. {entry.get('timestamp', '')[:19]} {describe_entry(entry)}"
            for n, entry in enumerate(log.get("entries", []), start=1)
        ] or ["(no entries yet)"]
        lines.append(chain_verdict(log.get("chain", {})))
        return "\n".join(lines) + time_left()

    return execute


def chain_verdict(chain: dict[str, Any]) -> str:
    """rdbench's verdict on a log's chain, in words."""
    if not chain.get("intact", False):
        return f"chain: BROKEN at {chain.get('broken_at')}"
    if chain.get("sealed_at"):
        return f"chain: intact; sealed by finish at {chain['sealed_at']}"
    return "chain: intact"
