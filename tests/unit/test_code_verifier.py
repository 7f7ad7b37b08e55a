"""The code verifier: code extraction, test parsing, output comparison, verdicts, the recipe.

Programs really run in the sandbox (whichever isolation works here); limits stay small.
"""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from factory.sandbox import SandboxError, sandbox_isolation
from factory.types import Completion, Prompt, Trace
from factory.verifiers import VERIFIERS
from factory.verifiers.code import (
    BadTests,
    CodeParams,
    CodeVerifier,
    extract_code,
    parse_tests,
    return_matches,
    stdout_matches,
)

ADD_TESTS = json.dumps({"inputs": ["1 2\n", "3 4\n", "10 -3\n"], "outputs": ["3\n", "7\n", "7\n"]})
ADD = "a, b = map(int, input().split())\nprint(a + b)"


def make_trace(answer: str, reference: str | None = ADD_TESTS, reasoning: str = "",
               reasoning_content: str | None = None) -> Trace:
    p = Prompt("p1", 0, "add two numbers", reference, [{"role": "user", "content": "x"}], "test")
    text = f"<think>{reasoning}</think>{answer}" if reasoning else answer
    c = Completion("p1", 0, text, "stop", reasoning_content=reasoning_content)
    return Trace(p, c, reasoning, answer, bool(reasoning), True)


def block(code: str, lang: str = "python") -> str:
    return f"Here is my solution.\n```{lang}\n{code}\n```\n"


@pytest.fixture(scope="module")
def verifier() -> CodeVerifier:
    # A generous clock: the machine is shared, and a correct program must never time out here.
    v = CodeVerifier(CodeParams(timeout_s=5, memory_mb=256, max_processes=8, workers=2))
    yield v
    v.close()


# -- extraction -------------------------------------------------------------------------------


def test_extract_takes_the_last_python_block_and_skips_other_languages() -> None:
    text = block("print('draft')") + block("print('final')") + "Sample output:\n```text\n3\n```\n"
    assert extract_code(make_trace(text)).strip() == "print('final')"


def test_extract_accepts_unlabeled_blocks_and_falls_back_to_the_whole_completion() -> None:
    assert extract_code(make_trace(block("print(1)", lang=""))).strip() == "print(1)"
    # No block after the reasoning: the last block anywhere in the completion is used.
    t = make_trace("I ran out of room.", reasoning="try:\n```python\nprint(2)\n```\n")
    assert extract_code(t).strip() == "print(2)"
    t = make_trace("no code", reasoning_content="```py\nprint(3)\n```")
    assert extract_code(t).strip() == "print(3)"
    assert extract_code(make_trace("just words, no fences")) is None
    assert extract_code(make_trace(block("   ", lang=""))) is None


# -- tests parsing ----------------------------------------------------------------------------


def test_parse_tests_forms_and_failures() -> None:
    t = parse_tests(ADD_TESTS)
    assert t is not None and len(t.inputs) == 3 and t.fn_name is None
    call = parse_tests(json.dumps({"fn_name": "f", "inputs": [[1]], "outputs": [2]}))
    assert call is not None and call.fn_name == "f"
    assert parse_tests(None) is None and parse_tests("  ") is None
    assert parse_tests(json.dumps({"inputs": [], "outputs": []})) is None
    for bad in ("{not json", "[1, 2]", json.dumps({"inputs": ["1"], "outputs": []}),
                json.dumps({"inputs": ["1"], "outputs": ["1"], "fn_name": "a b"})):
        with pytest.raises(BadTests):
            parse_tests(bad)


# -- comparison -------------------------------------------------------------------------------


def test_stdout_comparison_is_tolerant_but_not_lax() -> None:
    assert stdout_matches("3  \n7\n\n\n", "3\n7")
    assert stdout_matches("1 2 3\n", "1\n2\n3\n")  # tokens
    assert stdout_matches("0.3333333\n", "0.33333333")  # floats within 1e-6
    assert stdout_matches("a\nb\n", ["a", "b"])  # APPS keeps some outputs as lists of lines
    assert not stdout_matches("0.334\n", "0.333")
    assert not stdout_matches("0.3333333\n", "0.33333333", tol=None)
    assert not stdout_matches("3\n", "3\n4\n")
    assert not stdout_matches("", "0")
    assert not stdout_matches("YES\n", "yes\n")


def test_return_comparison_accepts_taco_wrapping() -> None:
    assert return_matches(7, [7])  # TACO wraps some return values in a list
    assert return_matches([1, 2], [1, 2]) and return_matches([1, 2], [[1, 2]])
    assert return_matches(0.1 + 0.2, 0.3)
    assert return_matches({"a": [1, 2]}, {"a": [1, 2]})
    assert not return_matches(8, [7])
    assert not return_matches([1, 2], [2, 1])
    assert not return_matches("7", 7)


# -- verdicts ---------------------------------------------------------------------------------


def test_registered_and_params_forbid_unknown_keys() -> None:
    assert VERIFIERS.get("code") is CodeVerifier
    with pytest.raises(ValidationError):
        CodeParams(timeout=3)
    with pytest.raises(ValidationError):
        CodeParams(isolation="docker")


def test_stdio_pass_and_wrong_answer_carry_counts(verifier: CodeVerifier) -> None:
    ok = verifier.verify(make_trace(block(ADD)))
    assert (ok.name, ok.passed, ok.reason) == ("code", True, "all_tests_passed (3/3 passed)")
    # Right on the first two tests only (b > 0), wrong on the third.
    partial = "a, b = map(int, input().split())\nprint(a + abs(b))"
    v = verifier.verify(make_trace(block(partial)))
    assert (v.passed, v.reason) == (False, "wrong_answer (2/3 passed)")


def test_failure_kinds(verifier: CodeVerifier) -> None:
    cases = {
        "no_code": "I think the answer is 3.",
        "compile_error": block("def f(:\n    pass"),
        "runtime_error (0/3 passed)": block("raise ValueError('boom')"),
        "memory (0/3 passed)": block("x = bytearray(1 << 30)"),
    }
    got = {reason: verifier.verify(make_trace(text)) for reason, text in cases.items()}
    for reason, verdict in got.items():
        assert (verdict.passed, verdict.reason) == (False, reason)
    short = CodeVerifier(CodeParams(timeout_s=1, memory_mb=256, max_processes=8))
    # Right on the first test, then loops: stops at the first timeout, the third never runs.
    code = "a, b = map(int, input().split())\nwhile a == 3:\n    pass\nprint(a + b)"
    v = short.verify(make_trace(block(code)))
    assert (v.passed, v.reason) == (False, "timeout (1/2 passed)")


def test_unknown_when_tests_are_missing_or_broken(verifier: CodeVerifier) -> None:
    assert verifier.verify(make_trace(block(ADD), reference=None)).reason == "no_tests"
    assert verifier.verify(make_trace(block(ADD), reference='{"inputs": [], "outputs": []}')).passed is None
    v = verifier.verify(make_trace(block(ADD), reference="not json"))
    assert (v.passed, v.reason) == (None, "bad_tests")


def test_call_based_class_and_function(verifier: CodeVerifier) -> None:
    ref = json.dumps({"fn_name": "twoSum", "inputs": [[[2, 7, 11], 9], [[3, 3], 6]],
                      "outputs": [[[0, 1]], [0, 1]]})
    cls = (
        "import sys\n"
        "class Solution:\n"
        "    def twoSum(self, nums, target):\n"
        "        print('debugging noise')  # must not be taken for the return value\n"
        "        seen = {}\n"
        "        for i, x in enumerate(nums):\n"
        "            if target - x in seen:\n"
        "                return (seen[target - x], i)\n"
        "            seen[x] = i\n"
        "if __name__ == '__main__':\n"
        "    sys.stdin.read()  # a main block must not run (nor eat the harness's input)\n"
        "    print('main ran')\n"
    )
    v = verifier.verify(make_trace(block(cls), reference=ref))
    assert (v.passed, v.reason) == (True, "all_tests_passed (2/2 passed)")
    func = "def twoSum(nums, target):\n    return [0, 0]"
    v = verifier.verify(make_trace(block(func), reference=ref))
    assert (v.passed, v.reason) == (False, "wrong_answer (0/2 passed)")
    missing = "def other(nums, target):\n    return [0, 1]"
    assert verifier.verify(make_trace(block(missing), reference=ref)).reason == "runtime_error (0/2 passed)"


def test_max_tests_limits_what_runs() -> None:
    v = CodeVerifier(CodeParams(timeout_s=5, memory_mb=256, max_processes=8, max_tests=2))
    try:
        # Wrong on the third test only: with max_tests=2 it is never run.
        code = "a, b = map(int, input().split())\nprint(a + abs(b))"
        assert v.verify(make_trace(block(code))).reason == "all_tests_passed (2/2 passed)"
    finally:
        v.close()


def test_verify_many_keeps_order(verifier: CodeVerifier) -> None:
    traces = [make_trace(block(ADD)), make_trace("none"), make_trace(block("print(0)")),
              make_trace(block(ADD), reference=None)]
    reasons = [v.reason for v in verifier.verify_many(traces)]
    assert reasons == ["all_tests_passed (3/3 passed)", "no_code", "wrong_answer (0/3 passed)",
                       "no_tests"]


def test_describe_reports_isolation(verifier: CodeVerifier) -> None:
    d = verifier.describe()
    assert d["name"] == "code" and d["params"]["timeout_s"] == 5
    assert d["sandbox"]["isolation"] == sandbox_isolation() in ("bubblewrap", "rlimits")
    assert d["sandbox"]["network"] in ("namespace", "audit-hook")


def test_require_isolation_refuses_the_fallback() -> None:
    # Forcing the fallback stands in for a machine without bubblewrap.
    with pytest.raises(SandboxError, match="require_isolation"):
        CodeVerifier(CodeParams(isolation="rlimits", require_isolation=True))
    assert CodeVerifier(CodeParams(isolation="rlimits")).isolation == "rlimits"


# -- the recipe -------------------------------------------------------------------------------


def test_code_recipe_builds_a_valid_config() -> None:
    from pipelines.code import build, to_input_output

    cfg = build(None, ["source.limit=10"])
    assert cfg.source.dataset and cfg.source.columns.reference == "input_output"
    assert cfg.source.limit == 10 and cfg.teacher.expects_think_tags
    code = [v for v in cfg.verifiers if v.name == "code"]
    assert code and CodeParams.model_validate(code[0].params()).require_isolation
    # A math config turned into a code run: tests column, code prompt, code verifier.
    cfg = build("configs/default.yaml")
    assert cfg.source.columns.reference == "input_output"
    assert "python" in cfg.prompt.template and "boxed" not in cfg.prompt.template
    assert [v.name for v in cfg.verifiers] == ["truncation", "code"]

    cases = [{"input": "1 2\n", "output": "3\n"}]
    assert json.loads(to_input_output(cases)) == {"inputs": ["1 2\n"], "outputs": ["3\n"]}
    assert json.loads(to_input_output({"test_cases": cases}, fn_name="f"))["fn_name"] == "f"
    assert to_input_output("") is None and to_input_output([]) is None
    assert parse_tests(to_input_output(json.dumps({"inputs": ["x"], "outputs": ["y"]}))) is not None
