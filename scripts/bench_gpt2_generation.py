"""What a user would run instead of rdbench's generation for finetune-qa's `full` profile:
Hugging Face transformers' GPT2LMHeadModel (GPT-2 small's config, random weights: the cost does
not depend on them) generating greedily with its KV cache, a batch of prompts at once, on the
CPU. The same shapes as `--example full_generation`; one JSON line per repetition.

    python3 scripts/bench_gpt2_generation.py [PROMPTS] [PROMPT_TOKENS] [NEW_TOKENS] [THREADS] [REPS]
"""
import json
import sys
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel


def main():
    args = [int(a) for a in sys.argv[1:]]
    prompts, prompt_tokens, new_tokens, threads, reps = (args + [64, 40, 60, 2, 3][len(args):])[:5]
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    model = GPT2LMHeadModel(GPT2Config()).eval()
    ids = torch.tensor(
        [[(p * 7919 + i * 104729) % 50000 for i in range(prompt_tokens)] for p in range(prompts)]
    )
    for rep in range(reps):
        started = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=0,
            )
        seconds = time.perf_counter() - started
        generated = (out.shape[1] - prompt_tokens) * prompts
        print(json.dumps({
            "engine": "transformers " + __import__("transformers").__version__ + ", torch " + torch.__version__,
            "rep": rep, "threads": threads, "prompts": prompts, "prompt_tokens": prompt_tokens,
            "new_tokens": generated, "seconds": seconds,
            "generated_tokens_per_s": generated / seconds,
        }), flush=True)


if __name__ == "__main__":
    main()
