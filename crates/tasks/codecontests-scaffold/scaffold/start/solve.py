"""The starting scaffold: one completion per problem, its whole text taken as the program."""

import os

MODEL = os.environ.get("RDBENCH_MODEL", "rdbench-code-tiny")


async def generate_solution(client, semaphore, problem):
    prompt = "Solve this problem in Rust:\n\n" + problem["description"]
    async with semaphore:
        reply = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=512,
        )
    return reply.choices[0].message.content or ""
