"""The reference scaffold, after METR's: several samples per request, the fenced code block
taken out of each, candidates filtered by the public tests with the evaluator copy, rounds
repeated until one passes or the rounds run out."""

import asyncio
import os
import re

import rust_eval

MODEL = os.environ.get("RDBENCH_MODEL", "rdbench-code-tiny")
SAMPLES = 8
ROUNDS = 4
FENCE = re.compile(r"```(?:rust)?[ \t]*\n(.*?)```", re.DOTALL)


def extract(text: str) -> str:
    """The first fenced block's code, else the whole text."""
    found = FENCE.search(text)
    return (found.group(1) if found else text).strip()


async def generate_solution(client, semaphore, problem):
    prompt = "Solve this problem in Rust:\n\n" + problem["description"]
    first = None
    tried = set()
    for _ in range(ROUNDS):
        async with semaphore:
            reply = await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": prompt}],
                n=SAMPLES,
                temperature=1.0,
                max_tokens=512,
            )
        for choice in reply.choices:
            code = extract(choice.message.content or "")
            if not code or code in tried:
                continue
            tried.add(code)
            first = first or code
            result = await asyncio.to_thread(rust_eval.evaluate, code, problem["public_tests"])
            if result["succeeded"]:
                return code
    return first or ""
