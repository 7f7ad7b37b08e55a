"""The plain way, as open-r1 built OpenR1-Math-220k: raw vLLM `LLM.generate` with n samples per
problem in one call, then verification over every completion afterwards.

Run by bench_yield.py in its own process (its engine's memory is gone before factory's starts);
prints one JSON line. Verification uses factory's own verifiers from the same config (truncation +
math-verify), so both sides of the benchmark judge traces by one rule; its time is counted.

With `--replay` it also replays the early-abort detectors over every completion, offline and
untimed, at the points an engine would have checked it (every `every_tokens` tokens), and reports
the accepted traces they would have cut: false aborts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time



def check_points(num_tokens: int, every: int) -> list[int]:
    """Token counts at which the vLLM engine looks at a running sample (vllm.py `_watched`):
    outputs arrive after token 1 and then every `every` tokens; the final one is not checked."""
    return [t for t in range(every + 1, num_tokens, every)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--replay", default=None, help="early_abort config (JSON) to replay offline")
    args = ap.parse_args()

    from benchmarks.raw_vllm import open_raw_engine
    from factory.degeneration import AbortWatch, EarlyAbortConfig
    from factory.types import Completion
    from factory.verifiers.stage import VerifyStage

    cfg, llm, tok, prompts, inputs, ready_s = open_raw_engine(args.config, args.overrides)
    # Built before the generation clock starts, as a script would import math-verify before generating.
    stage = VerifyStage(cfg, max(1, os.cpu_count() or 1))
    from vllm import SamplingParams  # after open_raw_engine set the engine's environment

    s = cfg.sampling
    params = SamplingParams(n=s.n, temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens)
    t1 = time.perf_counter()
    outs = llm.generate(inputs, params, use_tqdm=False)
    gen_s = time.perf_counter() - t1

    completions, ids = [], []
    for p, r in zip(prompts, outs):
        for i, o in enumerate(r.outputs):
            completions.append(Completion(p.prompt_id, i, o.text, o.finish_reason or "stop",
                                          prompt_tokens=len(r.prompt_token_ids or []), num_tokens=len(o.token_ids)))
            ids.append(list(o.token_ids))
    t2 = time.perf_counter()
    rows = stage.rows({p.prompt_id: p for p in prompts}, completions)
    verify_s = time.perf_counter() - t2
    stage.close()

    accepted = [r["accepted"] for r in rows]
    solved = sorted({r["prompt_id"] for r in rows if r["accepted"]})
    tokens = sum(c.num_tokens for c in completions)
    result = {"bench": "plain_way", "prompts": len(prompts), "n": s.n, "max_tokens": s.max_tokens,
              "tokens_out": tokens, "generation_s": round(gen_s, 3), "verify_s": round(verify_s, 3),
              "engine_ready_s": round(ready_s, 2), "accepted": sum(accepted), "solved": len(solved),
              "solved_ids": solved, "length_finished": sum(c.finish_reason == "length" for c in completions),
              "length_tokens": sum(c.num_tokens for c in completions if c.finish_reason == "length")}
    if args.replay:
        cfg_abort = EarlyAbortConfig.model_validate(json.loads(args.replay))
        would_cut = false_aborts = cut_tokens = 0
        for c, tids, acc in zip(completions, ids, accepted):
            watch, fired_at = AbortWatch(cfg_abort), None
            for t in check_points(len(tids), cfg_abort.every_tokens):
                if watch.update(tok.decode(tids[:t], skip_special_tokens=True), t):
                    fired_at = t
                    break
            if fired_at is not None:
                would_cut += 1
                cut_tokens += len(tids) - fired_at
                false_aborts += bool(acc)
        result.update({"replay_would_cut": would_cut, "false_aborts": false_aborts,
                       "replay_tokens_saved": cut_tokens})
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
