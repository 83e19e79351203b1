"""rdbench's runner for a scaffold module (codecontests-scaffold).

Run by the scorer in the sandbox, in the scaffold's folder, once per problem: reads the
problem (JSON: name, description, public_tests) on stdin, imports `solve` from the folder,
awaits `solve.generate_solution(client, semaphore, problem)` and prints the Rust source it
returns on stdout. The client is the OpenAI client pointed at the scorer's proxy (the only
address the sandbox reaches); the model's name is in $RDBENCH_MODEL.
"""

import asyncio
import json
import os
import sys


async def main() -> int:
    problem = json.load(sys.stdin)
    sys.path.insert(0, os.getcwd())
    import openai
    import solve

    client = openai.AsyncOpenAI(
        base_url=os.environ["OPENAI_BASE_URL"],
        api_key=os.environ["OPENAI_API_KEY"],
        max_retries=0,
        timeout=float(os.environ.get("RDBENCH_REQUEST_TIMEOUT_S", "120")),
    )
    semaphore = asyncio.Semaphore(int(os.environ.get("RDBENCH_CONCURRENCY", "4")))
    try:
        source = await solve.generate_solution(client, semaphore, problem)
    finally:
        await client.close()
    if not isinstance(source, str):
        print(f"generate_solution returned {type(source).__name__}, not str", file=sys.stderr)
        return 1
    sys.stdout.write(source)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
