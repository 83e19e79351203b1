"""The OpenAI Python client against `rdbench serve-llm` (run by tests/serve_llm.rs).

Usage: serve_llm_client.py BASE_URL MODEL [PROMPT]. Asserts the contract and prints one JSON
line of what it saw. With PROMPT (a model that only writes programs, such as the tiny code
model), that is the question, and its answer may be white space.
"""
import json
import sys

import openai

base_url, model = sys.argv[1:3]
prompt = sys.argv[3] if len(sys.argv) > 3 else None
client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)
messages = [{"role": "user", "content": prompt or "What is the capital of France?"}]

listed = [m.id for m in client.models.list()]
assert listed == [model], listed

# Greedy is deterministic: the same request twice gives the same text.
greedy = [
    client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=6)
    for _ in range(2)
]
a, b = greedy
assert a.choices[0].message.content == b.choices[0].message.content, (a, b)
assert (a.choices[0].message.content if prompt else a.choices[0].message.content.strip()), a
assert a.choices[0].finish_reason in ("stop", "length"), a
assert a.object == "chat.completion" and a.model == model, a
u = a.usage
assert u.prompt_tokens > 5 and 1 <= u.completion_tokens <= 6, u
assert u.total_tokens == u.prompt_tokens + u.completion_tokens, u

# n = 2: two choices, in order, counted together in usage.
two = client.chat.completions.create(
    model=model, messages=messages, temperature=0.9, seed=3, n=2, max_tokens=4
)
assert [c.index for c in two.choices] == [0, 1], two
assert all(c.finish_reason in ("stop", "length") for c in two.choices), two
assert two.usage.prompt_tokens == u.prompt_tokens, two.usage
assert 2 <= two.usage.completion_tokens <= 8, two.usage

# A stop string ends the text before it: the greedy text's last two characters as the stop,
# the same greedy request gives the text up to their first occurrence.
text = a.choices[0].message.content
stop = text[-2:]
stopped = client.chat.completions.create(
    model=model, messages=messages, temperature=0, max_tokens=6, stop=["never there", stop]
)
assert stopped.choices[0].message.content == text[: text.find(stop)], (text, stop, stopped)
assert stopped.choices[0].finish_reason == "stop", stopped

# Another model's name: OpenAI's 404, raised by the client as NotFoundError.
try:
    client.chat.completions.create(model="gpt-4o", messages=messages, max_tokens=1)
    raise AssertionError("an unknown model was served")
except openai.NotFoundError as e:
    assert e.status_code == 404 and e.code == "model_not_found", e.body
    assert e.body["type"] == "invalid_request_error", e.body

# A bad parameter: 400 naming it.
try:
    client.chat.completions.create(model=model, messages=messages, temperature=5)
    raise AssertionError("temperature 5 was accepted")
except openai.BadRequestError as e:
    assert e.status_code == 400 and e.param == "temperature", e.body

print(json.dumps({
    "greedy": a.choices[0].message.content,
    "n2": [c.message.content for c in two.choices],
    "stopped": stopped.choices[0].message.content,
    "usage": u.model_dump(),
}))
