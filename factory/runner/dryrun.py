"""`factory generate --dry-run`: everything a run checks before its engines start, and no engine.

Resolves the config, checks the store and the teacher model (preflight), reads the input under the
input policy (counts, rejects per reason with their first line), runs the prefilters, and measures
each prompt with the teacher's own tokenizer and chat template against `teacher.max_model_len`:
what a run would send to the teacher, and what would fail or be cut short there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from factory.config import Config
from factory.engines.models import resolve_model
from factory.errors import UserError
from factory.runner.driver import preflight
from factory.runner.feed import PromptFeed
from factory.sources import PromptStream, check_input_policy
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
    with PromptStream(cfg) as stream:  # read as a run reads it: a chunk at a time
        summary = stream.scan()
        try:
            check_input_policy(summary, cfg.source)
            policy_error = None
        except UserError as e:
            policy_error = str(e)
        feed = PromptFeed(cfg, stream)
        count = feed.count()
        rejects = summary.rejects
        report = DryRunReport(
            config=cfg.model_dump(mode="json"), source=summary.info, rows_examined=summary.rows_examined,
            input_rejected=dict(summary.input_rejected), first_rejected_at=dict(rejects.first) if rejects else {},
            policy_error=policy_error, prefiltered=feed.prefiltered, prompts=count, token_check="")
        _measure(cfg, feed, report)
    return report


def _measure(cfg: Config, prompts: Iterable[Prompt], report: DryRunReport) -> None:
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
    report.longest_prompt_tokens = longest if report.prompts else None
    report.token_check = f"measured with {cfg.teacher.model}'s tokenizer and chat template"
