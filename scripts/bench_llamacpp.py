"""llama.cpp's side of scripts/bench-serve-llm.sh: the protocol of crates/llm/examples/bench.rs
(the same prompt tokens, read from the file that bench wrote; the same warm-up, repetitions and
greedy decoding by argmax), run by llama.cpp through llama-cpp-python's bindings of its C API.

Two ways to decode n sequences after one prefill are timed:
- "batched": llama.cpp's own batching, as its server does with parallel slots: the prompt's KV
  cache copied to n sequences (llama_memory_seq_cp), then one llama_decode per step for all n.
- "sequential": what llama-cpp-python's high-level API gives (no `n` in its completions): the
  sequences one after the other, each restarting from the saved prompt cache.
Prints one JSON line per repetition, as the Rust routine does.

Usage: bench_llamacpp.py GGUF THREADS DECODE_TOKENS REPS PROMPT_TOKENS_FILE
"""

import json
import sys
import time

import llama_cpp as lc
import numpy as np

N_MAX = 8


def main():
    path, threads, decode_tokens, reps, tokens_file = sys.argv[1:]
    threads, decode_tokens, reps = int(threads), int(decode_tokens), int(reps)
    prompt = [int(t) for t in open(tokens_file).read().split()]
    lc.llama_backend_init()
    model_params = lc.llama_model_default_params()
    model = lc.llama_model_load_from_file(path.encode(), model_params)
    if not model:
        sys.exit(f"bench_llamacpp: llama.cpp could not load {path}")
    params = lc.llama_context_default_params()
    params.n_ctx = N_MAX * 512
    params.n_batch = 512
    params.n_ubatch = 512
    params.n_seq_max = N_MAX
    params.kv_unified = True
    params.n_threads = threads
    params.n_threads_batch = threads
    ctx = lc.llama_init_from_model(model, params)
    vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(model))
    memory = lc.llama_get_memory(ctx)
    batch = lc.llama_batch_init(max(len(prompt), N_MAX), 0, N_MAX)

    def decode(rows):
        """rows: (token, position, sequence) each; logits for every row. Returns their argmaxes."""
        batch.n_tokens = len(rows)
        for i, (token, pos, seq) in enumerate(rows):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = 1
        if lc.llama_decode(ctx, batch) != 0:
            sys.exit("bench_llamacpp: llama_decode failed")
        out = []
        for i in range(len(rows)):
            logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, i), shape=(vocab,))
            out.append(int(np.argmax(logits)))
        return out

    def prefill():
        """The prompt into sequence 0 (only its last row's logits); returns the next token."""
        lc.llama_memory_clear(memory, True)
        batch.n_tokens = len(prompt)
        for i, token in enumerate(prompt):
            batch.token[i] = token
            batch.pos[i] = i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = int(i == len(prompt) - 1)
        if lc.llama_decode(ctx, batch) != 0:
            sys.exit("bench_llamacpp: llama_decode failed")
        logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, -1), shape=(vocab,))
        return int(np.argmax(logits))

    print(json.dumps({"engine": "llama.cpp", "version": lc.__version__, "threads": threads,
                      "prompt_tokens": len(prompt)}))
    # Warm-up, as the Rust routine: a short prefill first.
    saved, prompt = prompt, prompt[:8]
    prefill()
    prompt = saved
    for rep in range(reps):
        started = time.perf_counter()
        first = prefill()
        seconds = time.perf_counter() - started
        print(json.dumps({"phase": "prefill", "rep": rep, "tokens": len(prompt),
                          "seconds": seconds}))
    n_prompt = len(prompt)

    def restart(n):
        """Sequences 0..n-1 each holding the prompt (sequence 0's cache copied)."""
        for seq in range(1, N_MAX):
            lc.llama_memory_seq_rm(memory, seq, -1, -1)
        lc.llama_memory_seq_rm(memory, 0, n_prompt, -1)
        for seq in range(1, n):
            lc.llama_memory_seq_cp(memory, 0, seq, -1, -1)

    for n in (1, N_MAX):
        for rep in range(reps):
            restart(n)
            tokens = [first] * n
            started = time.perf_counter()
            for step in range(decode_tokens):
                tokens = decode([(tokens[s], n_prompt + step, s) for s in range(n)])
            seconds = time.perf_counter() - started
            print(json.dumps({"phase": "decode", "n": n, "mode": "batched", "rep": rep,
                              "tokens": n * decode_tokens, "seconds": seconds}))
    for rep in range(reps):
        # Sequentially: each sequence from the prompt's cache, one after the other.
        started = time.perf_counter()
        for _ in range(N_MAX):
            restart(1)
            token = first
            for step in range(decode_tokens):
                (token,) = decode([(token, n_prompt + step, 0)])
        seconds = time.perf_counter() - started
        print(json.dumps({"phase": "decode", "n": N_MAX, "mode": "sequential", "rep": rep,
                          "tokens": N_MAX * decode_tokens, "seconds": seconds}))
    lc.llama_batch_free(batch)
    lc.llama_free(ctx)
    lc.llama_model_free(model)


if __name__ == "__main__":
    main()
