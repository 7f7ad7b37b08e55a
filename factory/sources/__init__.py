"""Sources: rows from the builtin set, a local file or a Hub dataset, mapped to Prompts.

The input policy, applied here before any engine starts:
- a row that cannot be used (bytes that are not UTF-8, a malformed line, a missing or empty
  problem, a missing or empty reference when a verifier needs one) is rejected at input time with
  its reason and its line, and never sent to the teacher;
- a run whose input rejects more than `source.max_rejected_fraction` of its rows stops before
  any engine starts (`check_input_policy`), naming the reasons and the first line of each;
- a wrong column name stops the run with the columns that do exist in the message.

Rows are read a chunk at a time (sources/stream.py): a run holds the prompts in flight, not the set.

Every source also says what it read (`info["content_sha256"]`, or a Hub commit in
`info["revision"]`): a run resumed on changed input must refuse, not mix the two.
"""

from __future__ import annotations

from typing import Any

from factory.config import Config, SourceConfig
from factory.errors import UserError
from factory.sources.stream import PromptSet, PromptStream, content_id, rows_sha256

__all__ = ["PromptSet", "PromptStream", "check_input_policy", "content_id", "input_identity", "load_prompts",
           "rows_sha256"]


def input_identity(info: dict[str, Any]) -> dict[str, Any]:
    """What a run records about its input, and compares on resume."""
    keys = ("kind", "name", "content_sha256", "revision", "subset", "split")
    return {k: info.get(k) for k in keys if info.get(k) is not None}


def load_prompts(cfg: Config) -> PromptSet:
    """Every prompt at once: for small inputs and tests. A run streams them (PromptStream)."""
    with PromptStream(cfg) as stream:
        prompt_set = stream.scan()
        prompt_set.prompts = list(stream)
    return prompt_set


def check_input_policy(prompt_set: PromptSet, src: SourceConfig) -> None:
    """Stop before any engine starts when the input rejects more than source.max_rejected_fraction."""
    rejects = prompt_set.rejects
    if rejects is None or not prompt_set.rows_examined:
        return
    bad = rejects.harmful()
    fraction = bad / prompt_set.rows_examined
    if fraction <= src.max_rejected_fraction:
        return
    hint = ""
    if rejects.counts.get("not_utf8"):
        hint = f" Re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 {rejects.label} > fixed.jsonl`)."
    elif rejects.counts.get("missing_reference"):
        hint = " Check source.columns.reference, or fill in the missing answers."
    raise UserError(
        f"input {rejects.label}: {bad} of {prompt_set.rows_examined} rows rejected ({fraction:.1%}), more than "
        f"source.max_rejected_fraction={src.max_rejected_fraction:g}: {rejects.describe()}. No engine was "
        f"started.{hint} To run on the rows that remain, raise the threshold, e.g. "
        f"--set source.max_rejected_fraction={min(1.0, round(fraction + 0.005, 2)):g}"
    )
