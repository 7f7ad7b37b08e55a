"""Recipe: verified reasoning traces for programming problems (APPS / TACO style tests).

Usage:

    factory generate configs/code_r1.yaml
    factory generate configs/code_r1.yaml --set source.limit=200 --set sampling.n=8
    factory generate configs/code_r1.yaml --set source.dataset=BAAI/TACO --set source.split=test

From Python:

    from factory.recipes.code import build
    cfg = build("configs/code_r1.yaml", ["source.limit=50"])   # overrides as in --set
    from factory.api import generate
    result = generate(cfg)   # publishes if the config has a publish section

Datasets. Any dataset whose tests are in the APPS/TACO `input_output` form works as is: map its
problem column to `source.columns.problem` and `input_output` to `source.columns.reference`
(TACO and APPS: `question` and `input_output`). The column holds a JSON string
{"inputs": [...], "outputs": [...]} (stdin/stdout tests) or the same plus "fn_name" (call-based:
each input is the argument list); the `code` verifier reads it directly (factory/verifiers/code.py).
Rows with an empty test list get the verdict "no_tests" (passed=None), so they are never accepted.

- BAAI/TACO ships a loading script next to its Arrow files; recent `datasets` releases refuse
  dataset scripts. If `load_dataset` refuses it, point `source.dataset` at a Parquet copy with
  the same columns, or export the rows to a local .jsonl/.parquet file and use `source.path`.
- Datasets that keep tests in another shape (e.g. a list of {"input", "output"} cases) need one
  conversion pass to a local file first; `to_input_output()` below does the usual shapes.
- Call-based problems come with starter code (TACO's `starter_code` column). The prompt template
  formats only {problem}, so put the starter code into the problem text when exporting, or keep
  to stdin/stdout problems.

The verifier runs every program in the sandbox (factory/sandbox/__init__.py): bubblewrap when `bwrap`
works, else rlimits only. The config sets `require_isolation: true`, so a machine without a
working bubblewrap refuses to start instead of running teacher code under the weaker fallback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from factory.config import Config, VerifierSpec, load_config

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "code_r1.yaml"
MATH_TEMPLATE_HINT = "\\boxed"
CODE_TEMPLATE = (
    "{problem}\n\nSolve this problem in Python 3. Read the input from standard input and write the "
    "answer to standard output. Put your complete solution in one ```python code block at the end."
)


def build(cfg: Config | str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """The code recipe as a validated Config.

    `cfg`: a Config, a YAML path, or None for configs/code_r1.yaml; `overrides` are `a.b=c`
    strings as on the command line. What a code run cannot do without is enforced: a `code`
    verifier (added with its defaults if missing), a reference column (the tests), and a prompt
    that asks for a Python code block rather than a boxed math answer.
    """
    if cfg is None or isinstance(cfg, str | Path):
        cfg = load_config(cfg or DEFAULT_CONFIG, overrides)
    elif overrides:
        cfg = load_config(None, overrides, origin="<build>", data=cfg.model_dump(mode="json"))
    data = cfg.model_dump(mode="json")
    if data["source"]["columns"].get("reference") in (None, "answer"):
        data["source"]["columns"]["reference"] = "input_output"
    if MATH_TEMPLATE_HINT in data["prompt"]["template"]:
        data["prompt"]["template"] = CODE_TEMPLATE
    if not any(v["name"] == "code" for v in data["verifiers"]):
        data["verifiers"] = [v for v in data["verifiers"] if v["name"] != "math"]
        data["verifiers"].append(VerifierSpec(name="code").model_dump(mode="json"))
    return load_config(None, [], origin="<code recipe>", data=data)


def to_input_output(tests: Any, fn_name: str | None = None) -> str | None:
    """Normalize common test shapes to the `input_output` JSON string the verifier reads.

    Accepts the input_output form itself (dict or JSON string) or a list of cases
    [{"input": ..., "output": ...}, ...]. Returns None when there are no tests.
    """
    if isinstance(tests, str):
        if not tests.strip():
            return None
        tests = json.loads(tests)
    if isinstance(tests, dict) and "test_cases" in tests:
        tests = tests["test_cases"]
    if isinstance(tests, list):
        cases = [t for t in tests if isinstance(t, dict) and "input" in t and "output" in t]
        tests = {"inputs": [c["input"] for c in cases], "outputs": [c["output"] for c in cases]}
    if not isinstance(tests, dict) or not tests.get("inputs"):
        return None
    out = {"inputs": list(tests["inputs"]), "outputs": list(tests["outputs"])}
    if fn_name or tests.get("fn_name"):
        out["fn_name"] = fn_name or tests["fn_name"]
    return json.dumps(out)
