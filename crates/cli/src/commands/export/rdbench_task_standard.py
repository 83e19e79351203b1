"""rdbench's runtime for METR Task Standard families (written by `rdbench export task-standard`).

A Task Standard driver runs a family's methods as root: they are the platform's side, and each
one asks rdbench's protected scoring service through `rdbench-client`:

- `start` has the service start an attempt owned by the agent's user in the attempt folder and
  keeps the attempt's id in a file only root can read;
- `intermediate_score` scores that attempt by id (what the agent's own `rdbench-client score`
  does too); an invalid submission is a NaN score with the reason, an environment error raises so
  the driver can retry;
- `aggregate_scores` (and `score`, for drivers without intermediate scoring) finish the attempt
  once: rdbench's sealed log chooses the final score (the best valid entry, or the last for a
  hidden-score task), not the driver's copy of the scores. A second call reads the first's
  summary instead of finishing again.

Every reply is read from a file the client's stdout was written to, never from a pipe a driver
might truncate. Nothing here holds a secret: the agent may read this file.
"""

import json
import math
import os
import pathlib
import subprocess
import tempfile

# rdbench's exit codes.
SCORED, INVALID, USAGE, ENVIRONMENT = 0, 1, 2, 3
# How long a scoring call may wait beyond the task's own scoring limit (the service queues runs).
QUEUE_ALLOWANCE_S = 900


class RdbenchError(RuntimeError):
    """The service could not do what was asked (usage or environment): not the agent's fault."""


def family_class(spec):
    """The `TaskFamily` class of one exported family, its methods closed over `spec`."""

    def client(*args, timeout_s=120):
        with tempfile.TemporaryDirectory(prefix="rdbench-ts-") as tmp:
            reply_path = pathlib.Path(tmp, "reply.json")
            with open(reply_path, "wb") as reply_file:
                proc = subprocess.run(
                    [spec["client"], "--socket", spec["socket"], "--json", *args],
                    stdin=subprocess.DEVNULL,
                    stdout=reply_file,
                    stderr=subprocess.PIPE,
                    timeout=timeout_s,
                    check=False,
                )
            text = reply_path.read_text(encoding="utf-8", errors="replace")
        try:
            reply = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError:
            reply = {}
        if proc.returncode not in (SCORED, INVALID):
            said = proc.stderr.decode("utf-8", "replace").strip() or reply.get("error", "")
            raise RdbenchError(
                f"rdbench-client {args[0]} exited {proc.returncode}: {said}"
            )
        return proc.returncode, reply

    def state_path(t, what):
        return pathlib.Path(spec["state_dir"], f"{spec['rdbench_task']}-{t['profile']}.{what}.json")

    def write_private(path, value):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(value, f)

    def read_state(path):
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd) as f:
            return json.load(f)

    def attempt_id(t):
        path = state_path(t, "attempt")
        try:
            return read_state(path)["id"]
        except FileNotFoundError:
            raise RdbenchError(f"{path}: no attempt started (start was not run)") from None

    class TaskFamily:
        standard_version = spec["standard_version"]

        @staticmethod
        def get_tasks():
            return {
                name: {
                    "name": name,
                    "rdbench_task": spec["rdbench_task"],
                    "profile": task["profile"],
                    "needs_gpu": task["needs_gpu"],
                    "time_limit_minutes": task["time_limit_minutes"],
                    "instructions": task["instructions"],
                }
                for name, task in spec["tasks"].items()
            }

        @staticmethod
        def get_instructions(t):
            return t["instructions"]

        @staticmethod
        def get_permissions(t):
            # No network: the scorer is reached through its Unix socket.
            return []

        @staticmethod
        def start(t):
            _, reply = client(
                "start",
                spec["rdbench_task"],
                "--profile",
                t["profile"],
                "--dir",
                spec["attempt_dir"],
                "--owner",
                spec["agent_user"],
                "--agent",
                "task-standard",
            )
            write_private(state_path(t, "attempt"), {"id": reply["id"]})

        @staticmethod
        def intermediate_score(t):
            code, entry = client(
                "score", attempt_id(t), timeout_s=spec["score_timeout_s"] + QUEUE_ALLOWANCE_S
            )
            if code == INVALID:
                message = {"valid": False, "kind": entry.get("kind"), "reason": entry.get("reason")}
                return {"score": math.nan, "message": message, "details": entry}
            if spec["score_hidden"]:
                # The driver may show the message to the agent: a hidden task's says only that
                # the submission was recorded.
                return {"score": math.nan, "message": {"valid": True, "recorded": True}, "details": entry}
            score = entry.get("normalized")
            message = {"valid": True, "score": score, "headline": entry.get("headline")}
            return {
                "score": math.nan if score is None else float(score),
                "message": message,
                "details": entry,
            }

        @staticmethod
        def aggregate_scores(t, score_log):
            # The driver's log is a copy; rdbench's sealed log decides.
            del score_log
            path = state_path(t, "summary")
            try:
                summary = read_state(path)
            except FileNotFoundError:
                _, summary = client("finish", attempt_id(t))
                write_private(path, summary)
            # No valid entry scores 0, as `rdbench aggregate` counts it.
            score = summary.get("score")
            return 0.0 if score is None else float(score)

        @staticmethod
        def score(t, submission):
            # rdbench scores the attempt's files; the submitted string carries nothing.
            del submission
            TaskFamily.intermediate_score(t)
            return TaskFamily.aggregate_scores(t, [])

        @staticmethod
        def teardown(t):
            del t

    return TaskFamily
