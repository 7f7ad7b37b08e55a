"""`factory generate --dry-run`: everything a run checks before its engines start, and no engine.

Resolves the config, checks the store and the teacher model (preflight), reads the input under the
input policy (counts, rejects per reason with their first line), runs the prefilters, and measures
each prompt with the teacher's own tokenizer and chat template against `teacher.max_model_len`:
what a run would send to the teacher, and what would fail or be cut short there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from factory.config import Config
from factory.engines.models import resolve_model
from factory.errors import UserError
from factory.runner.driver import prefilter_prompts, preflight
from factory.sources import check_input_policy, load_prompts
from factory.types import Prompt


@dataclass
class DryRunReport:
    config: dict[str, Any]
    source: dict[str, Any]
    rows_examined: int
    input_rejected: dict[str, int]
    first_rejected_at: dict[str, str]
    policy_error: str | None  # the message a real run would stop with, if it would
    prefiltered: dict[str, int]
    prompts: int  # what would be sent to the teacher
    token_check: str  # how prompt lengths were measured, or why they were not
    over_context: list[str] = field(default_factory=list)  # prompt ids longer than max_model_len
    short_of_max_tokens: int = 0  # prompts that leave less than sampling.max_tokens to generate
    longest_prompt_tokens: int | None = None


def dry_run(cfg: Config) -> DryRunReport:
    preflight(cfg, create=False)
    prompt_set = load_prompts(cfg)
    try:
        check_input_policy(prompt_set, cfg.source)
        policy_error = None
    except UserError as e:
        policy_error = str(e)
    prompts, prefiltered, _ = prefilter_prompts(cfg, prompt_set.prompts)
    rejects = prompt_set.rejects
    report = DryRunReport(
        config=cfg.model_dump(mode="json"), source=prompt_set.info, rows_examined=prompt_set.rows_examined,
        input_rejected=dict(prompt_set.input_rejected), first_rejected_at=dict(rejects.first) if rejects else {},
        policy_error=policy_error, prefiltered=prefiltered, prompts=len(prompts), token_check="")
    _measure(cfg, prompts, report)
    return report


def _measure(cfg: Config, prompts: list[Prompt], report: DryRunReport) -> None:
    if cfg.teacher.engine != "vllm":
        report.token_check = f"not measured: teacher.engine {cfg.teacher.engine} has no local tokenizer"
        return
    from transformers import AutoTokenizer

    model = resolve_model(cfg.teacher.model)
    tokenizer = AutoTokenizer.from_pretrained(model, revision=cfg.teacher.revision)
    limit, room = cfg.teacher.max_model_len, cfg.sampling.max_tokens
    longest = 0
    for p in prompts:
        if getattr(tokenizer, "chat_template", None):
            ids = tokenizer.apply_chat_template(p.messages, add_generation_prompt=True, tokenize=True)
            n = len(ids["input_ids"] if hasattr(ids, "keys") else ids)  # newer transformers return a dict
        else:
            n = len(tokenizer("\n".join(m["content"] for m in p.messages))["input_ids"])
        longest = max(longest, n)
        if n >= limit:
            report.over_context.append(p.prompt_id)
        elif n + room > limit:
            report.short_of_max_tokens += 1
    report.longest_prompt_tokens = longest if prompts else None
    report.token_check = f"measured with {cfg.teacher.model}'s tokenizer and chat template"
