"""The ceiling: raw vLLM `LLM.generate` over the whole prompt list in one call.

Run by bench_throughput.py in its own process (so its engine's memory is gone before factory's
starts); prints one JSON line. Same model, prompts, chat template and sampling as factory's run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def open_raw_engine(config: str, overrides: list[str]) -> tuple[Any, Any, Any, list[Any], list[dict[str, Any]], float]:
    """(cfg, llm, tokenizer, prompts, token-id inputs, engine-ready seconds): raw vLLM with the
    engine environment, chat template and prompts a factory replica would get. Shared by the
    throughput ceiling (here) and the plain way of bench_yield (plain_way.py)."""
    import os

    import torch

    if not torch.cuda.is_available():  # the same engine environment a factory CPU replica gets
        from factory.engines.vllm import cpu_engine_env

        os.environ.update({k: v for k, v in cpu_engine_env(os.cpu_count() or 1).items() if k not in os.environ})
    from transformers import AutoTokenizer
    from vllm import LLM

    from factory.config import load_config
    from factory.engines.models import resolve_model
    from factory.engines.vllm import engine_args
    from factory.sources import load_prompts

    cfg = load_config(config, overrides)
    prompts = load_prompts(cfg).prompts
    t0 = time.perf_counter()
    kwargs = engine_args(cfg.teacher.model_dump(mode="json"), cfg.sampling.seed, resolve_model(cfg.teacher.model))
    llm = LLM(**kwargs)
    ready_s = time.perf_counter() - t0
    tok = AutoTokenizer.from_pretrained(kwargs["model"])
    inputs = [{"prompt_token_ids": tok.apply_chat_template(p.messages, tokenize=True, add_generation_prompt=True,
                                                            return_dict=False)} for p in prompts]
    return cfg, llm, tok, prompts, inputs, ready_s


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    cfg, llm, _, prompts, inputs, ready_s = open_raw_engine(args.config, args.overrides)
    from vllm import SamplingParams

    s = cfg.sampling
    params = SamplingParams(n=s.n, temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens,
                            ignore_eos=s.ignore_eos)
    t1 = time.perf_counter()
    outs = llm.generate(inputs, params, use_tqdm=False)
    gen_s = time.perf_counter() - t1
    tokens = sum(len(o.token_ids) for r in outs for o in r.outputs)
    print(json.dumps({"bench": "raw_vllm", "prompts": len(prompts), "n": s.n, "tokens_out": tokens,
                      "generation_s": round(gen_s, 3), "tokens_per_s": round(tokens / gen_s, 2),
                      "engine_ready_s": round(ready_s, 2)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
