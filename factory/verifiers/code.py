"""Run the teacher's program against the problem's tests, in the sandbox (factory/sandbox/__init__.py).

Reference format: a JSON string in the APPS/TACO `input_output` form:

- stdin/stdout problems: {"inputs": ["1 2\\n", ...], "outputs": ["3\\n", ...]}
- call-based problems: the same plus "fn_name"; each input is a list of arguments and each output
  the return value (TACO sometimes wraps it in a list: both forms are accepted, as TACO does).

Verdict "code" (reasons keep a stable first word so they can be counted; the brackets say how
many tests passed out of those run):

- True: "all_tests_passed (N/N passed)"
- False: "no_code", "compile_error", "wrong_answer (k/N passed)", "timeout (k/N passed)",
  "memory (k/N passed)", "runtime_error (k/N passed)"; a killed or over-long run counts as
  runtime_error. Tests run in order and stop at the first timeout (each would cost the full limit
  and the trace is rejected anyway).
- None: "no_tests" (no reference, or an empty test list), "bad_tests" (a reference that is not
  valid input_output JSON), "sandbox_error" (the sandbox itself failed: proves nothing).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from factory.sandbox import SandboxError, SandboxLimits, run_python, sandbox_details
from factory.types import Trace, Verdict
from factory.verifiers.base import VERIFIERS, Verifier

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+#.-]*)[^\n]*\n(.*?)```", re.DOTALL)
_PY_LANGS = {"python", "py", "python3", "py3"}


class CodeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout_s: float = Field(default=4.0, gt=0, le=300)  # per test, wall clock
    memory_mb: int = Field(default=512, ge=64)  # address space of each process
    max_output_bytes: int = Field(default=1 << 20, ge=1024)
    max_tests: int | None = Field(default=32, ge=1)  # the first N tests; None runs all
    max_processes: int = Field(default=16, ge=4)
    workers: int | None = Field(default=None, ge=1)  # traces checked at once; default cpu count
    float_tolerance: float | None = Field(default=1e-6, ge=0)  # None: floats compare as text
    require_isolation: bool = False  # True: refuse to run without bubblewrap
    isolation: str = Field(default="auto", pattern="^(auto|bubblewrap|rlimits)$")


@dataclass(frozen=True, slots=True)
class Tests:
    inputs: list[Any]
    outputs: list[Any]
    fn_name: str | None


class BadTests(ValueError):
    pass


def parse_tests(reference: str | None) -> Tests | None:
    """The input_output JSON -> Tests; None when there are no tests; BadTests when unreadable."""
    if reference is None or not str(reference).strip():
        return None
    try:
        data = json.loads(reference) if isinstance(reference, str) else reference
    except json.JSONDecodeError as e:
        raise BadTests(f"reference is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadTests("reference must be a JSON object with inputs and outputs")
    inputs, outputs = data.get("inputs"), data.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs):
        raise BadTests("reference needs lists `inputs` and `outputs` of the same length")
    fn_name = data.get("fn_name") or None
    if fn_name is not None and (not isinstance(fn_name, str) or not fn_name.isidentifier()):
        raise BadTests(f"fn_name {fn_name!r} is not an identifier")
    if not inputs:
        return None
    return Tests(inputs, outputs, fn_name)


def extract_code(trace: Trace) -> str | None:
    """The last ```python (or unlabeled) block of the answer; else of the whole completion."""
    c = trace.completion
    whole = f"{c.reasoning_content}\n{c.text}" if c.reasoning_content else c.text
    for text in (trace.answer_text, whole):
        blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text or "")]
        py = [b for lang, b in blocks if lang in _PY_LANGS] or [b for lang, b in blocks if not lang]
        if py and py[-1].strip():
            return py[-1]
    return None


# -- comparing outputs ------------------------------------------------------------------------


def _as_text(x: Any) -> str:
    # APPS stores some inputs/outputs as lists of lines.
    if isinstance(x, list):
        return "\n".join(str(v) for v in x)
    return str(x)


def _lines(s: str) -> list[str]:
    lines = [ln.rstrip() for ln in s.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _float_eq(a: str, b: str, tol: float) -> bool:
    try:
        fa, fb = float(a), float(b)
    except ValueError:
        return False
    return math.isclose(fa, fb, rel_tol=tol, abs_tol=tol)


def stdout_matches(got: str, expected: Any, tol: float | None = 1e-6) -> bool:
    """Tolerant compare: trailing whitespace per line, then tokens, then floats within tol."""
    exp = _as_text(expected)
    if _lines(got) == _lines(exp):
        return True
    gt, et = got.split(), exp.split()
    if gt == et:
        return True
    if tol is None or len(gt) != len(et):
        return False
    return all(g == e or _float_eq(g, e, tol) for g, e in zip(gt, et, strict=True))


def _norm(x: Any) -> Any:
    if isinstance(x, tuple | list):
        return [_norm(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _norm(v) for k, v in x.items()}
    return x


def _value_eq(a: Any, b: Any, tol: float | None) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b or (tol is not None and math.isclose(a, b, rel_tol=tol, abs_tol=tol))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_value_eq(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_value_eq(a[k], b[k], tol) for k in a)
    return a == b


def return_matches(got: Any, expected: Any, tol: float | None = 1e-6) -> bool:
    """Call-based compare; TACO sometimes wraps the expected value in a one-element list."""
    got, expected = _norm(got), _norm(expected)
    if _value_eq(got, expected, tol):
        return True
    return isinstance(expected, list) and len(expected) == 1 and _value_eq(got, expected[0], tol)


# -- call-based harness -----------------------------------------------------------------------

_HARNESS = r"""
import io, json, sys
_SRC = {src!r}
_args = json.loads(sys.stdin.read())  # before the solution runs: it might read stdin itself
_real_out = sys.stdout
sys.stdout = io.StringIO()  # what the solution prints is not its return value
_ns = {{"__name__": "solution", "__builtins__": __builtins__}}
exec(compile(_SRC, "solution.py", "exec"), _ns)
if "Solution" in _ns and hasattr(_ns["Solution"], {fn!r}):
    _fn = getattr(_ns["Solution"](), {fn!r})
elif {fn!r} in _ns:
    _fn = _ns[{fn!r}]
else:
    raise SystemExit("harness: no function {fn} (nor Solution.{fn}) in the solution")
_res = _fn(*_args) if isinstance(_args, list) else _fn(_args)
def _enc(o):
    if isinstance(o, (set, frozenset)):
        return sorted(o, key=repr)
    return repr(o)
_real_out.write("\n" + json.dumps(_res, default=_enc) + "\n")
_real_out.flush()
"""


def call_harness(src: str, fn_name: str) -> str:
    return _HARNESS.format(src=src, fn=fn_name)


# -- the verifier -----------------------------------------------------------------------------


@VERIFIERS.register("code")
class CodeVerifier(Verifier):
    Params = CodeParams
    version = "1"
    needs_reference = True
    params: CodeParams

    def __init__(self, params: BaseModel, context: dict[str, Any] | None = None):
        super().__init__(params, context)
        p = self.params
        details = sandbox_details(p.isolation)  # probes once; raises SandboxError if nothing works
        if p.require_isolation and details["isolation"] != "bubblewrap":
            raise SandboxError(
                "code verifier: require_isolation is set but only the weaker 'rlimits' sandbox "
                "works here; install bubblewrap (`apt-get install -y bubblewrap`) and check that "
                "`bwrap --unshare-all --ro-bind / / true` runs, or set require_isolation: false"
            )
        self._details = details
        self._limits = SandboxLimits(
            timeout_s=p.timeout_s, memory_mb=p.memory_mb, max_output_bytes=p.max_output_bytes,
            max_processes=p.max_processes,
        )
        self._pool: ThreadPoolExecutor | None = None

    @property
    def isolation(self) -> str:
        return str(self._details["isolation"])

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["sandbox"] = dict(self._details)
        return d

    def verify(self, trace: Trace) -> Verdict:
        try:
            tests = parse_tests(trace.prompt.reference)
        except BadTests:
            return self.verdict(None, "bad_tests")
        if tests is None:
            return self.verdict(None, "no_tests")
        src = extract_code(trace)
        if src is None:
            return self.verdict(False, "no_code")
        try:
            compile(src, "solution.py", "exec")
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            return self.verdict(False, "compile_error")
        return self._run_tests(src, tests)

    def _run_tests(self, src: str, tests: Tests) -> Verdict:
        p = self.params
        n = len(tests.inputs) if p.max_tests is None else min(p.max_tests, len(tests.inputs))
        program = call_harness(src, tests.fn_name) if tests.fn_name else src
        passed = run = 0
        first_fail: str | None = None
        for i in range(n):
            inp, exp = tests.inputs[i], tests.outputs[i]
            stdin = json.dumps(inp) if tests.fn_name else _as_text(inp)
            try:
                res = run_python(program, stdin, self._limits, isolation=p.isolation)
            except SandboxError:
                return self.verdict(None, f"sandbox_error ({passed}/{run} passed)")
            run += 1
            outcome = self._judge(res.status, res.stdout, exp, tests.fn_name is not None)
            if outcome == "ok":
                passed += 1
                continue
            first_fail = first_fail or outcome
            if outcome == "timeout":
                break
        if first_fail is None:
            return self.verdict(True, f"all_tests_passed ({passed}/{run} passed)")
        return self.verdict(False, f"{first_fail} ({passed}/{run} passed)")

    def _judge(self, status: str, stdout: str, expected: Any, call_based: bool) -> str:
        if status in ("timeout", "memory"):
            return status
        if status != "ok":
            return "runtime_error"  # runtime_error, killed, output_limit
        tol = self.params.float_tolerance
        if not call_based:
            return "ok" if stdout_matches(stdout, expected, tol) else "wrong_answer"
        last = [ln for ln in stdout.splitlines() if ln.strip()][-1:]
        try:
            got = json.loads(last[0])  # the harness writes the return value last
        except (IndexError, json.JSONDecodeError):
            return "wrong_answer"
        return "ok" if return_matches(got, expected, tol) else "wrong_answer"

    def verify_many(self, traces: Sequence[Trace]) -> list[Verdict]:
        # Threads are enough: each test is a subprocess, the thread only waits on its pipes.
        if len(traces) <= 1:
            return [self.verify(t) for t in traces]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.params.workers or os.cpu_count() or 1,
                                            thread_name_prefix="code-verify")
        return list(self._pool.map(self.verify, traces))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
