"""Quality verifiers: repetition, language, length. Table-driven; each case says why it exists."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from factory.config import VerifierSpec
from factory.types import Completion, Prompt, Trace
from factory.verifiers import VERIFIERS, build_verifiers
from factory.degeneration import duplicate_ngram_ratio, tail_loop
from factory.verifiers.quality import script_of

# A legitimate worked solution: restates equations while checking (as reasoning traces do),
# long enough (> 50 word 10-grams) for the n-gram ratio to be judged at all.
GOOD = (
    "We need the sum of all x with f(x) = 12 where f(x) = 3x^2 - 7x + 2. "
    "Setting 3x^2 - 7x + 2 = 12 gives 3x^2 - 7x - 10 = 0. "
    "By Vieta's formulas the sum of the roots of ax^2 + bx + c is -b/a, so here it is 7/3. "
    "Let me double-check by factoring: 3x^2 - 7x - 10 = (3x - 10)(x + 1), whose roots are 10/3 and -1. "
    "Their sum is 10/3 - 1 = 7/3, which matches. Both roots are real, so both count. "
    "Another sanity check: plugging x = -1 into f gives 3 + 7 + 2 = 12, as required, and plugging "
    "x = 10/3 gives 3(100/9) - 70/3 + 2 = 100/3 - 70/3 + 6/3 = 36/3 = 12, also as required. "
    "So the answer is \\boxed{\\frac{7}{3}}."
)
LOOP_LINE = "Wait, let me recompute 3 + 4 = 7 once more.\n"


def trace(text: str, num_tokens: int = 0, reasoning_content: str | None = None) -> Trace:
    prompt = Prompt("p0", 0, "q", "7/3", [{"role": "user", "content": "q"}], "test")
    completion = Completion("p0", 0, text, "stop", num_tokens=num_tokens,
                            reasoning_content=reasoning_content)
    return Trace(prompt, completion, reasoning=text, answer_text="", has_think_tags=False,
                 think_tags_balanced=True)


def verify(name: str, text: str, params: dict | None = None, **kw):
    # Through the config path the runner uses: VerifierSpec -> build_verifiers -> Params.
    (v,) = build_verifiers([VerifierSpec(name=name, **(params or {}))])
    verdict = v.verify(trace(text, **kw))
    assert verdict.name == name
    return verdict.passed, verdict.reason


def test_registered():
    assert {"repetition", "language", "length"} <= set(VERIFIERS.names())


@pytest.mark.parametrize("name", ["repetition", "language", "length"])
def test_params_forbid_unknown_keys(name):
    # A typo in a config must fail before any engine starts.
    with pytest.raises(ValidationError):
        VERIFIERS.get(name).Params.model_validate({"no_such_option": 1})


# --------------------------------------------------------------------------------------------
# repetition

REPETITION_CASES = [
    # (id, text, params, expected (passed, reason))
    # a real solution that restates its equations is not a loop
    ("good_reasoning", GOOD, {}, (True, None)),
    # nothing to judge; emptiness is the length verifier's job
    ("empty", "", {}, (True, None)),
    # the classic small-teacher failure: one line repeated until max_tokens (100k chars)
    ("loop_100k_chars", GOOD + LOOP_LINE * (100_000 // len(LOOP_LINE)), {}, (False, "repetition_tail")),
    # the same loop cut mid-line by max_tokens: the last copy is partial
    ("loop_cut_mid_unit", GOOD + LOOP_LINE * 40 + LOOP_LINE[:17], {}, (False, "repetition_tail")),
    # a boxed answer repeated over and over at the end
    ("boxed_answer_loop", GOOD + "\n" + "\\boxed{7/3}\n" * 30, {}, (False, "repetition_tail")),
    # a loop with no spaces at all (Chinese): only the character-level tail check can see it
    ("loop_without_spaces", GOOD + "我们再检查一下。" * 200, {}, (False, "repetition_tail")),
    # single-character degenerate run
    ("exclamation_run", GOOD + "!" * 400, {}, (False, "repetition_tail")),
    # a loop in the middle that the model escaped: the tail is fine, the n-grams are not
    ("loop_in_middle", LOOP_LINE * 60 + GOOD, {}, (False, "repetition_loop")),
    # ... and with a stricter threshold a milder middle repetition is caught too
    ("mild_loop_strict", GOOD + " " + LOOP_LINE * 8 + GOOD[::-1], {"max_duplicate_ratio": 0.05},
     (False, "repetition_loop")),
    # a markdown rule at the end is formatting, not a loop (run below tail_min_chars)
    ("markdown_rule", GOOD + "\n" + "-" * 60, {}, (True, None)),
    # the final answer stated twice is normal
    ("answer_twice", GOOD + "\n\\boxed{7/3}\n\\boxed{7/3}\n", {}, (True, None)),
    # trailing whitespace after a loop does not hide it
    ("loop_then_spaces", GOOD + LOOP_LINE * 30 + "\n\n   \n", {}, (False, "repetition_tail")),
    # a short text with every word repeated has too few n-grams for the ratio to mean anything
    ("short_repeats", "yes " * 20, {}, (True, None)),
    # char unit: a repeated no-space block in the middle is caught by char n-grams
    ("char_unit_middle", "解方程得到答案是七分之三" * 80 + GOOD, {"unit": "char"},
     (False, "repetition_loop")),
]


@pytest.mark.parametrize("text,params,expected", [c[1:] for c in REPETITION_CASES],
                         ids=[c[0] for c in REPETITION_CASES])
def test_repetition(text, params, expected):
    assert verify("repetition", text, params) == expected


def test_repetition_is_linear_on_100k_chars():
    # 100k characters of a loop and of loop-free text: a quadratic scan would take minutes.
    loop = GOOD + LOOP_LINE * (100_000 // len(LOOP_LINE))
    words = " ".join(f"w{i}" for i in range(20_000))[:100_000]  # no repeats, no tail loop
    start = time.perf_counter()
    assert verify("repetition", loop) == (False, "repetition_tail")
    assert verify("repetition", words) == (True, None)
    assert time.perf_counter() - start < 5.0


def test_repetition_sees_engine_reasoning_content():
    # Engines that split reasoning out (reasoning_content) must not hide a loop from the filter.
    # The visible answer follows the loop, so the tail is clean: the n-gram ratio catches it.
    assert verify("repetition", "\\boxed{7}", reasoning_content=GOOD + LOOP_LINE * 40) == (
        False, "repetition_loop")
    # and the loop at the very end of the reasoning, with an empty visible text
    assert verify("repetition", "", reasoning_content=GOOD + LOOP_LINE * 20) == (
        False, "repetition_tail")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("abc" * 100, (3, 300)),  # exact period
        ("xyz" + "abcd" * 60 + "ab", (4, 242)),  # partial last copy counts
        ("abcdefgh" * 3, None),  # too few repeats and too short
        ("", None),
    ],
)
def test_tail_loop(text, expected):
    assert tail_loop(text, window=8192, min_repeats=5, min_chars=200) == expected


def test_duplicate_ngram_ratio():
    assert duplicate_ngram_ratio("a b c d".split(), 2) == (0.0, 3)
    assert duplicate_ngram_ratio("a b a b a b".split(), 2) == (3 / 5, 5)  # ab ba ab ba ab
    assert duplicate_ngram_ratio(["a"], 2) == (0.0, 0)


# --------------------------------------------------------------------------------------------
# language

CJK_SENTENCE = "我们需要仔细检查这个方程的两个根是否都满足条件。"
LANGUAGE_CASES = [
    # (id, text, params, expected)
    ("english_with_latex", GOOD, {}, (True, None)),
    # Greek letters are math notation, allowed by default
    ("greek_math_default", "Let θ = π/4, so sin θ = √2/2 and Δ = 0.", {}, (True, None)),
    # ... but a config that allows only Latin and Common treats them as another script
    ("greek_when_not_allowed", "Let θ = π/4, so sin θ = √2/2.", {"allowed_scripts": ["Latin", "Common"]},
     (False, "language_mixing")),
    # R1's failure: an English trace that drifts into Chinese for a sentence
    ("r1_chinese_mixing", GOOD + " " + CJK_SENTENCE + " " + GOOD, {}, (False, "language_mixing")),
    # Chinese hidden in LaTeX \text{} is still prose
    ("chinese_inside_latex_text", GOOD + " $x = 3 \\text{" + CJK_SENTENCE + "}$", {}, (False, "language_mixing")),
    # pure LaTeX commands: command names are not language (no letters left: pass)
    ("latex_commands_only", "$\\frac{\\alpha}{\\beta} + \\sqrt{\\pi}$", {}, (True, None)),
    # LaTeX command names do not dilute a short Chinese aside below the threshold
    ("latex_heavy_with_chinese", "$\\frac{\\alpha}{\\beta}\\cdot\\sqrt{\\gamma}\\int\\sum\\prod$ 所以", {},
     (False, "language_mixing")),
    # math alphanumerics and letterlike symbols are Common, not a script
    ("math_alphanumerics", "For all 𝑥 ∈ ℝ and ℓ > 0 we have 𝑥² ≥ 0.", {}, (True, None)),
    ("empty", "", {}, (True, None)),
    # fullwidth / ideographic punctuation without Han letters is punctuation, ignored
    ("cjk_punctuation_only", GOOD.replace(".", "。").replace(",", "，"), {}, (True, None)),
    # one stray Han character in a long trace stays under 1%
    ("single_stray_han", GOOD + " 的", {}, (True, None)),
    # Cyrillic prose is another language ...
    ("cyrillic", "Решим уравнение: x = 7/3.", {}, (False, "language_mixing")),
    # ... unless allowed (a Russian dataset)
    ("cyrillic_allowed", "Решим уравнение: x = 7/3.", {"allowed_scripts": ["Cyrillic", "Latin", "Common"]},
     (True, None)),
    # a Chinese dataset allows Han (script names are case-insensitive)
    ("han_allowed", CJK_SENTENCE + " x = 3", {"allowed_scripts": ["han", "latin", "common"]}, (True, None)),
    # threshold is configurable: a permissive one lets the mixed trace through
    ("mixing_permissive", GOOD + " " + CJK_SENTENCE, {"max_foreign_ratio": 0.5}, (True, None)),
]


@pytest.mark.parametrize("text,params,expected", [c[1:] for c in LANGUAGE_CASES],
                         ids=[c[0] for c in LANGUAGE_CASES])
def test_language(text, params, expected):
    assert verify("language", text, params) == expected


def test_language_reads_reasoning_content():
    # The Chinese is in the engine's separate reasoning, the visible text is clean.
    assert verify("language", "The answer is 7/3.", reasoning_content=CJK_SENTENCE * 3) == (
        False, "language_mixing")


def test_language_rejects_empty_allowed_scripts():
    with pytest.raises(ValidationError):
        VERIFIERS.get("language").Params.model_validate({"allowed_scripts": []})


@pytest.mark.parametrize(
    "ch,script",
    [("a", "Latin"), ("Ａ", "Latin"), ("π", "Greek"), ("中", "Han"), ("あ", "Hiragana"),
     ("カ", "Katakana"), ("한", "Hangul"), ("Ж", "Cyrillic"), ("ℝ", "Common"), ("𝑥", "Common")],
)
def test_script_of(ch, script):
    assert script_of(ch) == script


def test_language_100k_chars_fast():
    text = (GOOD + " ") * (100_000 // len(GOOD)) + CJK_SENTENCE
    start = time.perf_counter()
    assert verify("language", text) == (True, None)  # 24 Han letters in ~80k letters
    assert time.perf_counter() - start < 2.0


# --------------------------------------------------------------------------------------------
# length

LENGTH_CASES = [
    # (id, text, num_tokens, params, expected)
    # an empty completion is never a trace (min_chars defaults to 1)
    ("empty", "", 0, {}, (False, "too_short")),
    ("whitespace_only", " \n\t ", 3, {}, (False, "too_short")),
    ("default_bounds_pass", GOOD, 0, {}, (True, None)),
    ("under_min_tokens", GOOD, 40, {"min_tokens": 50}, (False, "too_short")),
    ("at_min_tokens", GOOD, 50, {"min_tokens": 50}, (True, None)),
    ("over_max_tokens", GOOD, 4001, {"max_tokens": 4000}, (False, "too_long")),
    ("at_max_tokens", GOOD, 4000, {"max_tokens": 4000}, (True, None)),
    ("over_max_chars", "x" * 101, 10, {"max_chars": 100}, (False, "too_long")),
    ("under_min_chars", "short", 1, {"min_chars": 10}, (False, "too_short")),
    # token bounds set but the engine gave no count: cannot tell (never silently accepted)
    ("tokens_unknown", GOOD, 0, {"max_tokens": 10}, (None, "num_tokens_unknown")),
]


@pytest.mark.parametrize("text,num_tokens,params,expected", [c[1:] for c in LENGTH_CASES],
                         ids=[c[0] for c in LENGTH_CASES])
def test_length(text, num_tokens, params, expected):
    assert verify("length", text, params, num_tokens=num_tokens) == expected


@pytest.mark.parametrize("params", [{"min_tokens": 10, "max_tokens": 5}, {"min_chars": 10, "max_chars": 5},
                                    {"max_tokens": 0}])
def test_length_rejects_inverted_bounds(params):
    with pytest.raises(ValidationError):
        VERIFIERS.get("length").Params.model_validate(params)
