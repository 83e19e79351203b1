"""A scripted agent on an rdbench task, end to end through Inspect (tests/inspect_eval.rs).

Runs `rdbench_inspect/rdbench` (found through the package's entry point) with the local
sandbox and `mockllm/model`, whose outputs are the script below: each turn is chosen from
the conversation so far (the attempt's folder is read from the prompt the setup wrote). The
scripted agent, as its own Unix user:

1. says who it is (`id -un`, bash),
2. scores the starting program,
3. writes the program given with --program (bash) and scores it,
4. replays that scoring call with the same tool call id (a retried call: logged once),
5. breaks the program (python) and scores it (an invalid entry),
6. reads the score log, and submits.

Every output carries its token usage: without it Inspect counts tokens with tiktoken, which
downloads its encoding (no network in CI). Writes Inspect's log (JSON) into --log-dir.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from inspect_ai import eval
from inspect_ai.model import ModelOutput, ModelUsage, get_model

FOLDER = re.compile(r"Your attempt's folder is (\S+);")
REPLAYED_ID = "call-score-program"


def scripted(program: str, submission: str):
    """The model: the next output, from the number of assistant turns so far."""

    def tool_call(name: str, arguments: dict, call_id: str | None = None) -> ModelOutput:
        out = ModelOutput.for_tool_call(
            model="mockllm/model",
            tool_name=name,
            tool_arguments=arguments,
            tool_call_id=call_id,
        )
        out.usage = ModelUsage(input_tokens=10, output_tokens=10, total_tokens=20)
        return out

    def model(messages, tools, tool_choice, config) -> ModelOutput:
        turn = sum(1 for m in messages if m.role == "assistant")
        prompt = next(m.text for m in messages if m.role == "user")
        folder = FOLDER.search(prompt).group(1)
        target = f"{folder}/{submission}"
        steps = [
            lambda: tool_call("bash", {"command": "id -un; pwd"}),
            lambda: tool_call("score", {}),
            lambda: tool_call(
                "bash", {"command": f"cat > {target} <<'PROGRAM'\n{program}\nPROGRAM"}
            ),
            lambda: tool_call("score", {}, REPLAYED_ID),
            lambda: tool_call("score", {}, REPLAYED_ID),
            lambda: tool_call(
                "python",
                {"code": f"open({target!r}, 'w').write('{{\"broken\": true}}')"},
            ),
            lambda: tool_call("score", {}),
            lambda: tool_call("score_log", {}),
            lambda: tool_call("submit", {"answer": "done"}),
        ]
        return steps[min(turn, len(steps) - 1)]()

    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--agent-user", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--client", required=True)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--program", required=True, help="the file the agent writes")
    parser.add_argument("--submission", required=True, help="its name in the attempt")
    parser.add_argument("--time-limit", type=float, default=30.0)
    parser.add_argument("--log-dir", required=True)
    args = parser.parse_args()
    model = get_model(
        "mockllm/model",
        custom_outputs=scripted(Path(args.program).read_text(), args.submission),
    )
    logs = eval(
        "rdbench_inspect/rdbench",
        task_args={
            "task": args.task,
            "profile": args.profile,
            "sandbox": "local",
            "agent_user": args.agent_user,
            "workdir": args.workdir,
            "client": args.client,
            "socket": args.socket,
            "time_limit": args.time_limit,
        },
        model=model,
        log_dir=args.log_dir,
        log_format="json",
        display="none",
    )
    for log in logs:
        print(f"{log.status}: {log.location}")
        if log.error:
            print(log.error.traceback, file=sys.stderr)
    return 0 if all(log.status == "success" for log in logs) else 1


if __name__ == "__main__":
    sys.exit(main())
