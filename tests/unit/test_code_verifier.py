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
    assert return_matches(7, [7], wrapped=True)  # TACO wraps every return value in a list
    assert return_matches([1, 2], [1, 2]) and return_matches([1, 2], [[1, 2]], wrapped=True)
    assert return_matches(0.1 + 0.2, 0.3)
    assert return_matches({"a": [1, 2]}, {"a": [1, 2]})
    assert not return_matches(8, [7], wrapped=True)
    assert not return_matches(7, [7])  # unwrapped: the value is a one-element list
    assert not return_matches([1, 2], [2, 1])
    assert not return_matches("7", 7)


def test_return_comparison_keeps_types() -> None:
    assert not return_matches(50.0, 50)  # an int answer compares exactly, as an int
    assert not return_matches(500000001, 500000000)
    assert return_matches(50, 50.0)  # an int is a right answer where a float is expected
    assert not return_matches(True, 1) and not return_matches(1, True)
    assert return_matches({"__tuple__": ["Venus"]}, ["Venus"])  # a tuple is JSON's list
    assert not return_matches("Venus", ["Venus"])  # not its element
    assert not return_matches({"__tuple__": ["Venus"]}, "Venus")
    assert not return_matches(["Venus"], ["Venus"], wrapped=True)


def test_stdout_tolerance_is_for_float_tokens_only() -> None:
    assert not stdout_matches("50.0\n", "50\n")  # `50.0` is not the integer 50
    assert not stdout_matches("500000001\n", "500000000\n")  # within 1e-6 relative, and wrong
    assert not stdout_matches("1000000000000000001\n", "1000000000000000000\n")
    assert stdout_matches("0.5\n", "0.50\n") and stdout_matches("1e-3\n", "0.001\n")
    assert stdout_matches("78.5398163\n", "78.53981634\n")
    assert not stdout_matches("78.54\n", "78.5398\n")  # two decimals: not within 1e-6...
    assert stdout_matches("78.54\n", "78.5398\n", tol=1e-4)  # ... within the problem's 1e-4
    assert not stdout_matches("nan\n", "0.5\n") and not stdout_matches("inf\n", "1e308\n")


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
                      "outputs": [[[0, 1]], [[0, 1]]]})  # TACO-wrapped: every output in a list
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
    from factory.recipes.code import build, to_input_output

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


# -- public problems: values, types, tolerance, output cap, checkers --------------------------
# Each problem below is a public one (statement and sample tests); the wrong programs are the
# mistakes the issue names. No wrong value or type may be accepted.

# Codeforces 1A "Theatre Square": n m a -> ceil(n/a) * ceil(m/a); answers reach 1e18.
THEATRE = json.dumps({"inputs": ["6 6 4\n", "1000000000 1000000000 1\n", "999999999 1000000000 1\n"],
                      "outputs": ["4\n", "1000000000000000000\n", "999999999000000000\n"]})
THEATRE_OK = "n, m, a = map(int, input().split())\nprint(-(-n // a) * -(-m // a))"

# HumanEval/148 `bf(planet1, planet2)`: the planets between two, a tuple ('Venus',) when one.
BF = json.dumps({"fn_name": "bf",
                 "inputs": [["Jupiter", "Neptune"], ["Earth", "Mercury"], ["Mercury", "Uranus"], ["Earth", "Earth"]],
                 "outputs": [["Saturn", "Uranus"], ["Venus"],
                             ["Venus", "Earth", "Mars", "Jupiter", "Saturn"], []]})
BF_OK = (
    "def bf(planet1, planet2):\n"
    "    names = ('Mercury', 'Venus', 'Earth', 'Mars', 'Jupiter', 'Saturn', 'Uranus', 'Neptune')\n"
    "    if planet1 not in names or planet2 not in names or planet1 == planet2:\n"
    "        return ()\n"
    "    a, b = sorted((names.index(planet1), names.index(planet2)))\n"
    "    return names[a + 1:b]\n"
)


def test_integers_compare_exactly(verifier: CodeVerifier) -> None:
    assert verifier.verify(make_trace(block(THEATRE_OK), reference=THEATRE)).passed is True
    off_by_one = THEATRE_OK.replace("print(", "print(1 + ")
    assert verifier.verify(make_trace(block(off_by_one), reference=THEATRE)).reason == "wrong_answer (0/3 passed)"
    as_float = THEATRE_OK.replace("print(", "print(float(") + ")"
    assert verifier.verify(make_trace(block(as_float), reference=THEATRE)).passed is False
    # MBPP/17 square_perimeter(a) == 4*a, stdio form: `40.0` for 40 is wrong, as in the tests.
    mbpp = json.dumps({"inputs": ["10\n", "5\n"], "outputs": ["40\n", "20\n"]})
    v = verifier.verify(make_trace(block("print(4 * float(input()))"), reference=mbpp))
    assert (v.passed, v.reason) == (False, "wrong_answer (0/2 passed)")
    # Near 5e8 (APPS-style sum of a range): off by one is inside 1e-6 relative, and wrong.
    big = json.dumps({"inputs": ["1 31622\n"], "outputs": [f"{sum(range(1, 31623))}\n"]})
    wrong = "a, b = map(int, input().split())\nprint(sum(range(a, b + 1)) + 1)"
    assert verifier.verify(make_trace(block(wrong), reference=big)).passed is False


def test_call_based_values_keep_their_type(verifier: CodeVerifier) -> None:
    assert verifier.verify(make_trace(block(BF_OK), reference=BF)).reason == "all_tests_passed (4/4 passed)"
    # Unwraps a one-element result: 'Venus' is not ('Venus',).
    unwrap = BF_OK.replace("return names[a + 1:b]", "r = names[a + 1:b]\n    return r[0] if len(r) == 1 else r")
    assert verifier.verify(make_trace(block(unwrap), reference=BF)).reason == "wrong_answer (3/4 passed)"
    # A list where a tuple is expected is the same value (JSON has no tuples).
    as_list = BF_OK.replace("return names[a + 1:b]", "return list(names[a + 1:b])")
    assert verifier.verify(make_trace(block(as_list), reference=BF)).passed is True
    # HumanEval/2 truncate_number(3.5) == 0.5: floats keep their tolerance; a bool is no number.
    trunc = json.dumps({"fn_name": "truncate_number", "inputs": [[3.5], [1.33], [123.456]],
                        "outputs": [0.5, 0.33, 0.456]})
    ok = "def truncate_number(number):\n    return number % 1.0"
    assert verifier.verify(make_trace(block(ok), reference=trunc)).passed is True
    as_bool = "def truncate_number(number):\n    return True"
    assert verifier.verify(make_trace(block(as_bool), reference=trunc)).passed is False
    # HumanEval/53 add(x, y): `5.0` is not 5.
    add = json.dumps({"fn_name": "add", "inputs": [[2, 3], [5, 7]], "outputs": [5, 12]})
    assert verifier.verify(make_trace(block("def add(x, y):\n    return x + y"), reference=add)).passed is True
    assert verifier.verify(make_trace(block("def add(x, y):\n    return float(x + y)"), reference=add)).passed is False


def test_tolerance_from_the_problem_or_the_config(verifier: CodeVerifier) -> None:
    # Codeforces 1C-style: "absolute or relative error 1e-4"; the area of a circle of radius 5.
    tests = {"inputs": ["5\n"], "outputs": ["78.5398163397\n"]}
    two_decimals = "import math\nr = int(input())\nprint(f'{math.pi * r * r:.2f}')"
    assert verifier.verify(make_trace(block(two_decimals), reference=json.dumps(tests))).passed is False
    tests["float_tolerance"] = 1e-4
    assert verifier.verify(make_trace(block(two_decimals), reference=json.dumps(tests))).passed is True
    loose = CodeVerifier(CodeParams(timeout_s=5, memory_mb=256, max_processes=8, float_tolerance=1e-4))
    tests.pop("float_tolerance")
    assert loose.verify(make_trace(block(two_decimals), reference=json.dumps(tests))).passed is True
    with pytest.raises(BadTests):
        parse_tests(json.dumps({"inputs": ["1"], "outputs": ["1"], "float_tolerance": "small"}))


def test_output_cap_follows_the_expected_output(verifier: CodeVerifier) -> None:
    # A right answer just over 1 MiB (the default cap): 600,000 lines of "1".
    big = json.dumps({"inputs": ["600000\n"], "outputs": ["1\n" * 600000]})
    ok = "import sys\nn = int(input())\nsys.stdout.write('1\\n' * n)"
    assert verifier.verify(make_trace(block(ok), reference=big)).reason == "all_tests_passed (1/1 passed)"
    # A flood far past what the expected output needs is cut, and the reason says so.
    flood = "import sys\nwhile True:\n    sys.stdout.write('1\\n' * 100000)"
    v = verifier.verify(make_trace(block(flood), reference=ADD_TESTS))
    assert (v.passed, v.reason.split()[0]) == (False, "output_limit")


# Codeforces 1352A "Sum of Round Numbers": n as a sum of the fewest round numbers, any order.
ROUND_TESTS = {"inputs": ["5\n5009\n7\n9876\n10000\n10\n"],
               "outputs": ["2\n5000 9\n1\n7\n4\n800 70 6 9000\n1\n10000\n1\n10\n"]}
ROUND_CHECKER = r"""
import json, sys
d = json.load(sys.stdin)
ns = [int(x) for x in d["input"].split()[1:]]
out = d["output"].split()
pos = 0
for n in ns:
    k = int(out[pos]); parts = [int(x) for x in out[pos + 1: pos + 1 + k]]; pos += 1 + k
    best = sum(c != "0" for c in str(n))
    ok = len(parts) == k == best and sum(parts) == n and all(
        p > 0 and str(p).rstrip("0") in "123456789" and len(str(p).rstrip("0")) == 1 for p in parts)
    if not ok:
        sys.exit(1)
sys.exit(0 if pos == len(out) else 1)
"""
ROUND_OK = (
    "for _ in range(int(input())):\n"
    "    s = input().strip()\n"
    "    parts = [c + '0' * (len(s) - i - 1) for i, c in enumerate(s) if c != '0']\n"
    "    print(len(parts))\n"
    "    print(' '.join(parts))\n"
)


def test_a_problem_brings_its_own_checker(verifier: CodeVerifier) -> None:
    plain = json.dumps(ROUND_TESTS)
    # Right, in another order than the sample output: only a checker can tell.
    assert verifier.verify(make_trace(block(ROUND_OK), reference=plain)).passed is False
    checked = json.dumps({**ROUND_TESTS, "checker": ROUND_CHECKER})
    assert verifier.verify(make_trace(block(ROUND_OK), reference=checked)).reason == "all_tests_passed (1/1 passed)"
    not_fewest = ROUND_OK.replace("print(len(parts))\n    print(' '.join(parts))",
                                  "print(len(parts) + 1)\n    print(' '.join(parts + ['0']))")
    assert verifier.verify(make_trace(block(not_fewest), reference=checked)).reason == "wrong_answer (0/1 passed)"
    broken = json.dumps({**ROUND_TESTS, "checker": "raise RuntimeError('checker bug')"})
    v = verifier.verify(make_trace(block(ROUND_OK), reference=broken))
    assert (v.passed, v.reason) == (None, "checker_error (0/1 passed)")
