"""Re-verify traces that already exist, without generating: `factory verify`.

Input: a version dir (its `all` rows; the verifiers default to the ones that version ran), or a
JSONL / JSON / Parquet file of rows with `problem`, `completion` (or `messages`: the last
assistant message is the completion) and `reference` (math) or `tests` (code), optionally
`finish_reason`, `prompt_id`, `sample_index`, `num_tokens`, `error`, `reasoning`.

Output: one Parquet file (zstd) holding every input column, with the verdict columns of the
`all` shape added or replaced: reasoning, extracted_answer, accepted, reject_reason, verdicts,
pass_rate (and prompt_id, sample_index when the input has none). Traces are parsed and judged by
the runner's own VerifyStage, so a re-verified row matches what `factory generate` would write.

Memory stays bounded: rows are read, verified and written in batches. pass_rate (accepted /
samples of the row's prompt) is known only once every row is in, so a first pass writes a temp
file and keeps per-prompt counts; a second pass fills pass_rate. The output appears in one
rename, never half-written, and never over the input or inside a version dir.

Rows that cannot be verified (no problem, no completion, a line that is not JSON) are kept as
rows with accepted=False and reject_reason "input:<why>", counted like any other reject.

A `reasoning` value that does not occur in the completion is reasoning the engine split off
(vLLM's reasoning parser): it is handed back as the completion's reasoning_content, so the
think-format check and the answer split see what they saw at generation time.
"""

from factory.reverify.inputs import BATCH_ROWS, Input, open_input, resolve_config
from factory.reverify.report import summary_tables
from factory.reverify.rows import row_trace
from factory.reverify.run import (
    META_KEY,
    VerifyResult,
    check_output,
    default_output,
    output_schema,
    read_metadata,
    reverify,
)

__all__ = ["BATCH_ROWS", "META_KEY", "Input", "VerifyResult", "check_output", "default_output", "open_input",
           "output_schema", "read_metadata", "resolve_config", "reverify", "row_trace", "summary_tables"]
