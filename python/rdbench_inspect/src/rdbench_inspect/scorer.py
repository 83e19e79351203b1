"""The final scorer: seals the attempt (`finish`, the platform's) and reports what rdbench's
log says, never Inspect's own copy of the conversation.

`finish` writes the attempt summary (`--out`, into the platform's private folder) and seals the
log; a second `finish` (Inspect's basic agent has been seen to run a scorer twice) changes
nothing and reports the same summary. The score is the summary's normalized score (0 = the
starting solution, 1 = the reference); its metadata carries the raw score, the calibration
the final entry was normalized with (start and reference raw scores, the device), the chain's
verdict and the whole summary.
"""

from __future__ import annotations

import json
import math
from typing import Any

from inspect_ai.scorer import Score, Target, mean, scorer, stderr
from inspect_ai.solver import TaskState

from . import attempt
from .attempt import PLATFORM_TIMEOUT_S
from .client import rdbench
from .tools import chain_verdict


def final_entry(entries: list[dict[str, Any]], summary: dict[str, Any]) -> dict | None:
    """The log entry the summary's final score came from: the last valid, counted entry with
    its raw score (rdbench's own choice; ties go to the later entry, as in rdbench)."""
    raw = summary.get("raw")
    if raw is None:
        return None
    chosen = [
        e
        for e in entries
        if e.get("valid") and not e.get("late") and e.get("raw") == raw
    ]
    return chosen[-1] if chosen else None


async def calibration_here(deployment, task: str, profile: str) -> dict | None:
    """The profile's calibration on the service's device, with its provenance (the
    operator's `info`; an agent is never shown the provenance)."""
    info = (
        await rdbench(deployment, ["info", task], as_agent=False, timeout=PLATFORM_TIMEOUT_S)
    ).json()
    found = next(
        (c for c in info.get("calibrations", []) if c.get("profile") == profile), None
    )
    if not found or not found.get("calibration"):
        return None
    return {"device": found.get("device"), **found["calibration"]}


@scorer(metrics=[mean(), stderr()])
def rdbench_score():
    """rdbench's final score of the sample's attempt (the attempt is sealed first)."""

    async def score(state: TaskState, target: Target) -> Score:
        record = attempt.current()
        deployment = record.deployment_()
        finished = await rdbench(
            deployment,
            ["finish", record.id, "--out", "{private}/summary.json"],
            as_agent=False,
            timeout=PLATFORM_TIMEOUT_S,
            extra_files=("summary.json",),
        )
        summary = json.loads(finished.files["summary.json"])
        log = (
            await rdbench(
                deployment, ["log", record.id], as_agent=False, timeout=PLATFORM_TIMEOUT_S
            )
        ).json()
        entry = final_entry(log.get("entries", []), summary)
        calibration = await calibration_here(deployment, record.task, record.profile)
        chain = log.get("chain", {})
        normalized = summary.get("score")
        value = normalized if isinstance(normalized, (int, float)) and math.isfinite(normalized) else 0.0
        explanation = (
            f"rdbench finish: {summary['task']} ({summary['profile']}), "
            f"normalized {normalized}, raw {summary.get('raw')}, "
            f"{summary['valid_entries']} of {summary['entries']} counted entries valid, "
            f"{summary['selection']} entry counts; {chain_verdict(chain)}"
        )
        if normalized is None:
            explanation += "; no final score (no valid scored entry): 0"
        return Score(
            value=value,
            answer=None if summary.get("raw") is None else repr(summary["raw"]),
            explanation=explanation,
            metadata={
                "attempt_id": record.id,
                "normalized": normalized,
                "raw": summary.get("raw"),
                "calibration": {
                    # (start, reference) raw scores the final entry was normalized with
                    # (rdbench's log blanks them for a hidden-score task), and the device.
                    "start_reference": entry.get("calibration") if entry else None,
                    "device": summary.get("device"),
                    # This installation's calibration of the profile now, as the operator's
                    # `info` reports it: where it came from (measured, shipped, the task's).
                    "installed": calibration,
                },
                "chain": chain,
                "log_break": summary.get("log_break"),
                "entries": summary.get("entries"),
                "valid_entries": summary.get("valid_entries"),
                "late_entries": summary.get("late_entries"),
                "summary": summary,
            },
        )

    return score
