"""Run the teacher's program against the problem's tests, in the sandbox (factory/sandbox/__init__.py).

Reference format: a JSON string in the APPS/TACO `input_output` form:

- stdin/stdout problems: {"inputs": ["1 2\\n", ...], "outputs": ["3\\n", ...]}
- call-based problems: the same plus "fn_name"; each input is a list of arguments and each output
  the return value. TACO wraps every return value in a one-element list: a problem whose outputs
  are all one-element lists is read that way, any other problem as given -- once per problem,
  never per test (so `'Venus'` is not accepted where `('Venus',)` is expected beside other
  tuples); `"outputs_wrapped": true/false` settles a problem the outputs leave open.
- optional keys: `"float_tolerance"` (this problem's tolerance: "absolute or relative error
  1e-4"), `"checker"` (Python source of a Codeforces-style checker, run in the same sandbox: it
  reads `{"input", "expected", "output"}` as JSON on stdin and exits 0 to accept; for problems
  with several valid answers).

Outputs compare token by token: integers and words exactly, and only a token written as a float
in the expected output (`0.5`, `1e-3`) within the tolerance (`50.0` is not `50`). Call-based
values compare with their types: an int is not a float, a bool is not an int, a string is not a
one-element tuple. The output cap grows with the expected output (twice its size plus 64 KiB),
and a run that hits it is `output_limit`, not a runtime error.

Verdict "code" (reasons keep a stable first word so they can be counted; the brackets say how
many tests passed out of those run):

- True: "all_tests_passed (N/N passed)"
- False: "no_code", "compile_error", "wrong_answer (k/N passed)", "timeout (k/N passed)",
  "memory (k/N passed)", "output_limit (k/N passed)", "runtime_error (k/N passed)"; a killed run
  counts as runtime_error; "checker_error (k/N passed)" is None (the checker itself failed). Tests run in order and stop at the first timeout (each would cost the full limit
  and the trace is rejected anyway).
- None: "no_tests" (no reference, or an empty test list), "bad_tests" (a reference that is not
  valid input_output JSON), "sandbox_error" (the sandbox itself failed: proves nothing).
"""

from __future__ import annotations

import dataclasses
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
    # For tokens written as floats in the expected output; a problem's own `float_tolerance`
    # (test metadata) wins. None: floats compare as text.
    float_tolerance: float | None = Field(default=1e-6, ge=0)
    require_isolation: bool = False  # True: refuse to run without bubblewrap
    isolation: str = Field(default="auto", pattern="^(auto|bubblewrap|rlimits)$")


@dataclass(frozen=True, slots=True)
class Tests:
    inputs: list[Any]
    outputs: list[Any]
    fn_name: str | None
    float_tolerance: float | None = None  # the problem's own; None: the verifier's
    checker: str | None = None  # Python source: stdin {"input", "expected", "output"} -> exit 0
    outputs_wrapped: bool = False  # call-based outputs wrapped in one-element lists (TACO)


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
    tol = data.get("float_tolerance")
    if tol is not None and (isinstance(tol, bool) or not isinstance(tol, int | float) or not 0 <= tol < 1):
        raise BadTests(f"float_tolerance {tol!r} is not a number in [0, 1)")
    checker = data.get("checker") or None
    if checker is not None and not isinstance(checker, str):
        raise BadTests("checker must be Python source text")
    wrapped = data.get("outputs_wrapped")
    if wrapped is None:  # TACO's convention shows in every output at once, or not at all
        wrapped = fn_name is not None and all(isinstance(o, list) and len(o) == 1 for o in outputs)
    return Tests(inputs, outputs, fn_name, float(tol) if tol is not None else None, checker, bool(wrapped))


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


_FLOAT_TOKEN = re.compile(r"^[+-]?(?:\d+\.\d*|\.\d+|\d+(?:\.\d*)?[eE][+-]?\d+)$")
_NUMBER_TOKEN = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


def _float_eq(got: str, expected: str, tol: float) -> bool:
    """Only a token the expected output writes as a float gets the tolerance; integers and
    words compare exactly (an off-by-one near 5e8 is inside 1e-6 relative, and wrong)."""
    if not _FLOAT_TOKEN.match(expected) or not _NUMBER_TOKEN.match(got):
        return False
    fa, fb = float(got), float(expected)
    return math.isclose(fa, fb, rel_tol=tol, abs_tol=tol)


def stdout_matches(got: str, expected: Any, tol: float | None = 1e-6) -> bool:
    """Trailing whitespace per line, then tokens, then float tokens within tol."""
    exp = _as_text(expected)
    if _lines(got) == _lines(exp):
        return True
    gt, et = got.split(), exp.split()
    if gt == et:
        return True
    if tol is None or len(gt) != len(et):
        return False
    return all(g == e or _float_eq(g, e, tol) for g, e in zip(gt, et, strict=True))


def _untag(x: Any) -> Any:
    """The harness writes tuples as {"__tuple__": [...]}: back to tuples."""
    if isinstance(x, dict):
        if set(x) == {"__tuple__"} and isinstance(x["__tuple__"], list):
            return tuple(_untag(v) for v in x["__tuple__"])
        return {k: _untag(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_untag(v) for v in x]
    return x


def _value_eq(got: Any, exp: Any, tol: float | None) -> bool:
    """`got` (the program's value) against `exp` (from JSON, where tuples are lists): equal
    values of the same kind. A tuple matches a list (JSON has no tuples); a scalar never matches
    a container; bool, int and float are three kinds, except that an int is a right answer
    where a float is expected."""
    if isinstance(got, bool) or isinstance(exp, bool):
        return type(got) is type(exp) and got == exp
    if isinstance(exp, float) and isinstance(got, int | float):
        return got == exp or (tol is not None and math.isclose(got, exp, rel_tol=tol, abs_tol=tol))
    if isinstance(exp, int):
        return type(got) is int and got == exp
    if isinstance(exp, list):
        return (isinstance(got, list | tuple) and len(got) == len(exp)
                and all(_value_eq(g, e, tol) for g, e in zip(got, exp, strict=True)))
    if isinstance(exp, dict):
        return (isinstance(got, dict) and {str(k) for k in got} == set(exp)
                and all(_value_eq(got[k] if k in got else got[_key(got, k)], exp[k], tol) for k in exp))
    return type(got) is type(exp) and got == exp


def _key(d: dict, k: str) -> Any:
    return next(x for x in d if str(x) == k)


def return_matches(got: Any, expected: Any, tol: float | None = 1e-6, wrapped: bool = False) -> bool:
    """Call-based compare; `wrapped`: the expected value sits in a one-element list (TACO)."""
    got = _untag(got)
    if wrapped:
        return isinstance(expected, list) and len(expected) == 1 and _value_eq(got, expected[0], tol)
    return _value_eq(got, expected, tol)


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
def _tag(o):  # JSON has no tuples: keep them apart from lists
    if isinstance(o, tuple):
        return {{"__tuple__": [_tag(v) for v in o]}}
    if isinstance(o, list):
        return [_tag(v) for v in o]
    if isinstance(o, dict):
        return {{k: _tag(v) for k, v in o.items()}}
    return o
def _enc(o):
    if isinstance(o, (set, frozenset)):
        return sorted(o, key=repr)
    return repr(o)
_real_out.write("\n" + json.dumps(_tag(_res), default=_enc) + "\n")
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
        tol = tests.float_tolerance if tests.float_tolerance is not None else p.float_tolerance
        passed = run = 0
        first_fail: str | None = None
        for i in range(n):
            inp, exp = tests.inputs[i], tests.outputs[i]
            stdin = json.dumps(inp) if tests.fn_name else _as_text(inp)
            try:
                res = run_python(program, stdin, self._limits_for(exp), isolation=p.isolation)
                outcome = self._judge(res.status, res.stdout, exp, tests, tol)
                if outcome == "ok" and tests.checker is not None:
                    outcome = self._check(tests.checker, inp, exp, res.stdout)
            except SandboxError:
                return self.verdict(None, f"sandbox_error ({passed}/{run} passed)")
            run += 1
            if outcome == "checker_error":
                return self.verdict(None, f"checker_error ({passed}/{run} passed)")
            if outcome == "ok":
                passed += 1
                continue
            first_fail = first_fail or outcome
            if outcome == "timeout":
                break
        if first_fail is None:
            return self.verdict(True, f"all_tests_passed ({passed}/{run} passed)")
        return self.verdict(False, f"{first_fail} ({passed}/{run} passed)")

    def _limits_for(self, expected: Any) -> SandboxLimits:
        """The output cap grows with the expected output: a right answer just over 1 MiB must
        not die as a runtime error."""
        need = 2 * len(_as_text(expected).encode()) + (64 << 10)
        if need <= self._limits.max_output_bytes:
            return self._limits
        return dataclasses.replace(self._limits, max_output_bytes=need)

    def _check(self, checker: str, inp: Any, expected: Any, output: str) -> str:
        """A problem's own checker, in the same sandbox: exit 0 accepts, any other exit rejects;
        a checker that crashes or times out proves nothing (checker_error)."""
        stdin = json.dumps({"input": inp, "expected": expected, "output": output})
        res = run_python(checker, stdin, self._limits_for(output), isolation=self.params.isolation)
        if res.status == "ok":
            return "ok"
        if res.status == "runtime_error" and res.returncode in (1, 2) and "Traceback" not in res.stderr_tail:
            return "wrong_answer"  # testlib's codes: 1 wrong answer, 2 presentation error
        return "checker_error"

    def _judge(self, status: str, stdout: str, expected: Any, tests: Tests, tol: float | None) -> str:
        if status in ("timeout", "memory", "output_limit"):
            return status
        if status != "ok":
            return "runtime_error"  # runtime_error, killed
        if tests.checker is not None and not tests.fn_name:
            return "ok"  # the checker decides
        if not tests.fn_name:
            return "ok" if stdout_matches(stdout, expected, tol) else "wrong_answer"
        last = [ln for ln in stdout.splitlines() if ln.strip()][-1:]
        try:
            got = json.loads(last[0])  # the harness writes the return value last
        except (IndexError, json.JSONDecodeError):
            return "wrong_answer"
        return "ok" if return_matches(got, expected, tol, tests.outputs_wrapped) else "wrong_answer"

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
