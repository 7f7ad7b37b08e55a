"""Prompt prefilters: exact / near dedup and benchmark decontamination. Never touches the network."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub / datasets

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from factory.prefilter import apply_prefilters
from factory.prefilter import dedup as dedup_mod
from factory.prefilter.config import DecontaminateConfig, DedupConfig, PrefilterConfig
from factory.prefilter.decontaminate import (
    BenchmarkUnavailable,
    NgramIndex,
    contaminated,
    load_benchmarks,
    read_problems,
)
from factory.prefilter.dedup import exact_duplicates, near_duplicates, normalize_exact, number_key, tokenize
from factory.types import Prompt

BENCH = Path(__file__).resolve().parents[1] / "data" / "benchmarks"
MATH500 = str(BENCH / "math500.jsonl")
AIME24 = str(BENCH / "aime24.json")
CUSTOM = str(BENCH / "custom_questions.jsonl")

LONG = (
    "A farmer has 17 sheep and buys 5 more each week. After several weeks she sells 12 of them "
    "at the market and keeps the rest in a pen behind the barn. How many sheep does she have "
    "after 3 weeks?"
)


def prompts(texts: list[str]) -> list[Prompt]:
    return [Prompt(f"id{i}", i, t, None, [{"role": "user", "content": t}], "test") for i, t in enumerate(texts)]


def no_hub(name, spec):  # a Hub loader that must never be reached
    raise AssertionError(f"the Hub was asked for {name}")


# --------------------------------------------------------------------------------------------
# exact dedup

@pytest.mark.parametrize(
    "a,b,same",
    [
        ("What is 2+3?", "what is   2+3", True),  # case, inner whitespace runs, trailing "?"
        ("  Solve x^2 = 4.\n", "Solve x^2 = 4", True),  # edge whitespace and full stop
        ("$x+1$", "x+1", True),  # math delimiters at the edges are formatting
        ("Ｗhat is 2+3?", "What is 2+3?", True),  # fullwidth letters fold under NFKC
        ("What is 2+3?", "What is 2+4?", False),  # a different number is a different problem
        ("What is 2+3?", "What is 2 + 3?", False),  # inner spacing of a formula: left to near dedup
        ("", "  ", True),  # empty problems are duplicates of each other
    ],
)
def test_normalize_exact(a, b, same):
    assert (normalize_exact(a) == normalize_exact(b)) is same


def test_exact_duplicates_keep_first():
    texts = ["B", "a", "b.", "A", "c", "b"]
    assert exact_duplicates(texts) == {2: 0, 3: 1, 5: 0}


# --------------------------------------------------------------------------------------------
# near dedup: pairs, each with the reason for the expected answer

NEAR_CASES = [
    # (id, a, b, cfg overrides, expect b removed as a near duplicate of a)
    # a reformatted copy (LaTeX delimiters, spacing) of the same problem
    ("reformatted_latex", "Find $x$ if $2x+3=7$.", "Find x if 2x + 3 = 7", {}, True),
    # short problems that differ in one number are two problems (numbers must match)
    ("short_number_differs", "What is 2+3?", "What is 2+4?", {}, False),
    # the operator is a token: 2+3 and 2*3 differ
    ("short_operator_differs", "What is 2+3?", "What is 2*3?", {}, False),
    # same numbers, swapped order: the shingles differ, so not a duplicate
    ("short_swapped_operands", "Compute 2 - 3.", "Compute 3 - 2.", {}, False),
    # a long word problem with one quantity changed: a different problem ...
    ("long_number_differs", LONG, LONG.replace("17 sheep", "19 sheep"), {}, False),
    # ... which is only kept apart by the numbers rule: Jaccard alone says "duplicate"
    ("long_number_differs_rule_off", LONG, LONG.replace("17 sheep", "19 sheep"),
     {"numbers_must_match": False}, True),
    # a long problem with one word changed: a rewording, same numbers
    ("long_reworded", LONG, LONG.replace("buys", "purchases"), {}, True),
    # numbers written differently but equal as numbers (trailing zeros, leading zeros)
    ("equal_numbers_written_differently", "A pen costs 2.50 dollars; find the cost of 04 pens.",
     "A pen costs 2.5 dollars. Find the cost of 4 pens.", {}, True),
    # unrelated problems with the same numbers
    ("unrelated_same_numbers", "What is 2+3?", "How many 2-digit primes have digit sum 3?", {}, False),
    # a higher threshold refuses the rewording
    ("reworded_strict_threshold", LONG, LONG.replace("buys", "purchases"), {"threshold": 0.95}, False),
    # single-token shingles ignore order: the same clauses swapped are a duplicate ...
    ("clauses_swapped_shingle_1", "If x plus 5 equals 9, solve for x.", "Solve for x, if x plus 5 equals 9.",
     {"shingle": 1}, True),
    # ... and with the default 3-token shingles they are not
    ("clauses_swapped_shingle_3", "If x plus 5 equals 9, solve for x.", "Solve for x, if x plus 5 equals 9.",
     {}, False),
]


@pytest.mark.parametrize("a,b,overrides,removed", [c[1:] for c in NEAR_CASES], ids=[c[0] for c in NEAR_CASES])
def test_near_pairs(a, b, overrides, removed):
    cfg = DedupConfig(**overrides)
    assert near_duplicates([a, b], cfg) == ({1: 0} if removed else {})


def test_near_is_symmetric_in_meaning_but_keeps_first():
    # Order decides which copy stays: always the first.
    a, b = "Find $x$ if $2x+3=7$.", "Find x if 2x + 3 = 7"
    assert near_duplicates([b, a], DedupConfig()) == {1: 0}


def test_near_chain_compares_with_kept_only():
    # a~b and b~c but a!~c: b goes (duplicate of a), c stays, since b is not kept.
    base = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    a = " ".join(base)
    b = " ".join(base[:-1] + ["other"])
    c = " ".join(base[:-2] + ["other", "more"])
    cfg = DedupConfig(shingle=1, threshold=0.8)
    j = dedup_mod.jaccard
    sh = [dedup_mod.shingle_hashes(tokenize(t), 1) for t in (a, b, c)]
    assert j(sh[0], sh[1]) >= 0.8 and j(sh[1], sh[2]) >= 0.8 > j(sh[0], sh[2])  # the premise
    assert near_duplicates([a, b, c], cfg) == {1: 0}


def test_near_skips_empty_and_skipped():
    # Empty texts have no shingles (exact dedup handles them); skipped indices are invisible.
    assert near_duplicates(["", "", "   "], DedupConfig()) == {}
    assert near_duplicates(["What is 2+3?", "what is 2 + 3"], DedupConfig(), skip={0}) == {}


@pytest.mark.parametrize("text,key", [
    ("What is 2+3?", ("2", "3")),
    ("x = 3, y = 2", ("2", "3")),  # a multiset: order does not matter
    ("2.50 and 002.5", ("2.5", "2.5")),
    ("no numbers here", ()),
])
def test_number_key(text, key):
    assert number_key(tokenize(text)) == key


def test_lsh_path_matches_exact_pairwise(monkeypatch):
    # Groups above _PAIRWISE_MAX go through datasketch's MinHash LSH. With clear-cut duplicates
    # (Jaccard >= 0.95) it must find exactly what comparing every pair finds.
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(3000)]
    base = [" ".join(rng.choice(vocab) for _ in range(40)) for _ in range(300)]  # no numbers: one group
    dups = [base[k] + " extra" for k in rng.sample(range(300), 30)]
    texts = base + dups
    rng.shuffle(texts)
    cfg = DedupConfig()
    assert len(texts) > dedup_mod._PAIRWISE_MAX
    via_lsh = near_duplicates(texts, cfg)
    monkeypatch.setattr(dedup_mod, "_PAIRWISE_MAX", 10**9)
    via_pairs = near_duplicates(texts, cfg)
    assert via_lsh == via_pairs
    assert len(via_lsh) == 30
    # every removed text is the longer copy or the later one of its pair
    assert all(j < i for i, j in via_lsh.items())


def test_near_is_deterministic_across_processes():
    # Stable hashes (crc32), fixed MinHash seed: another interpreter with another str-hash salt
    # removes the same prompts.
    import subprocess
    import sys

    rng = random.Random(3)
    vocab = [f"v{i}" for i in range(500)]
    texts = [" ".join(rng.choice(vocab) for _ in range(30)) for _ in range(80)]
    texts += [t + " again" for t in texts[:20]]
    code = (
        "import json,sys; from factory.prefilter.dedup import near_duplicates;"
        "from factory.prefilter.config import DedupConfig;"
        "print(json.dumps(sorted(near_duplicates(json.load(sys.stdin), DedupConfig()).items())))"
    )
    outs = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        r = subprocess.run([sys.executable, "-c", code], input=json.dumps(texts), capture_output=True,
                           text=True, env=env, check=True, cwd=Path(__file__).resolve().parents[2])
        outs.add(r.stdout)
    assert len(outs) == 1 and len(json.loads(outs.pop())) == 20


# --------------------------------------------------------------------------------------------
# decontamination

def decon(**kw) -> DecontaminateConfig:
    kw.setdefault("enabled", True)
    kw.setdefault("benchmarks", [])
    kw.setdefault("hub", False)
    return DecontaminateConfig(**kw)


DECON_CASES = [
    # (id, prompt, expected benchmark or None)
    # a benchmark problem copied verbatim
    ("verbatim", "Let $f(x) = 3x^2 - 7x + 2$. Find the sum of all values of $x$ for which $f(x) = 12$.", "math500"),
    # the same problem re-typeset (no LaTeX, other spacing) inside a longer prompt
    ("retypeset_inside_longer",
     "Homework 3. A rectangle has a perimeter of 46 units and an area of 120 square units. "
     "What is the length, in units, of its diagonal? Show your work.", "math500"),
    # exactly 8 consecutive shared words is enough (Open-R1's n)
    # ("integers such that m 2 n 20 20": the benchmark reads "integers such that $m^2 n = 20^{20}$")
    ("eight_words", "Think about this: integers such that m 2 n 20 20 then stop", "aime24"),
    # 7 shared words are not
    ("seven_words", "Think about this: such that m 2 n 20 20 then stop", None),
    # a benchmark problem shorter than 8 words, contained in a prompt
    ("short_problem_contained", "Quick warm-up: compute $\\dbinom{11}{4}$ by hand.", "math500"),
    # the same short problem with another number is a different problem
    ("short_problem_other_number", "Compute $\\dbinom{11}{5}$.", None),
    # a prompt equal to a 3-word benchmark problem is caught by equality
    ("equal_to_short_problem", "Simplify: $\\sqrt{245}$", "math500"),
    # but a 3-word problem is never matched by containment ("simplify sqrt 245" in a longer text)
    ("short_problem_not_contained", "Simplify sqrt 245 and then also simplify sqrt 80", None),
    # unrelated
    ("unrelated", "What is the capital of France? Answer in one word.", None),
    ("empty", "", None),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in DECON_CASES], ids=[c[0] for c in DECON_CASES])
def test_decontamination_cases(text, expected):
    cfg = decon(files={"math500": MATH500, "aime24": AIME24})
    hits = contaminated([text], cfg, hub_loader=no_hub)
    assert hits.get(0) == expected


def test_first_benchmark_in_config_order_wins():
    # The same problem in two benchmark files: reported under the one listed first.
    idx = NgramIndex({"aime24": ["one two three four five six seven eight nine"],
                      "math500": ["one two three four five six seven eight nine"]}, 8)
    assert idx.match("zero one two three four five six seven eight") == "aime24"


def test_custom_benchmark_with_column_override():
    cfg = decon(files={"mycode": CUSTOM}, columns={"mycode": "question"})
    text = ("Given a string of lowercase letters, return the minimum number of deletions needed so "
            "that no two adjacent characters are equal.")
    assert contaminated([text, "Reverse a linked list."], cfg, hub_loader=no_hub) == {0: "mycode"}


def test_missing_column_says_which_columns_exist():
    cfg = decon(files={"mycode": CUSTOM})  # column defaults to "problem"
    with pytest.raises(BenchmarkUnavailable, match=r"no column 'problem'.*id, question"):
        load_benchmarks(cfg, hub_loader=no_hub)


def test_missing_file():
    with pytest.raises(BenchmarkUnavailable, match="not found"):
        load_benchmarks(decon(files={"math500": "/nonexistent/math500.jsonl"}), hub_loader=no_hub)


def test_parquet_and_column_json(tmp_path):
    # Parquet and column-oriented JSON read the same problems as JSONL.
    rows = [json.loads(line) for line in Path(MATH500).read_text().splitlines()]
    problems = [r["problem"] for r in rows]
    pq.write_table(pa.table({"problem": problems, "answer": [r["answer"] for r in rows]}), tmp_path / "m.parquet")
    (tmp_path / "m.json").write_text(json.dumps({"problem": problems}))
    assert read_problems(tmp_path / "m.parquet", "problem") == problems
    assert read_problems(tmp_path / "m.json", "problem") == problems
    assert read_problems(MATH500, "problem") == problems
    (tmp_path / "m.csv").write_text("problem\nx\n")
    with pytest.raises(ValueError, match="unsupported format"):
        read_problems(tmp_path / "m.csv", "problem")


def test_no_file_and_hub_off_is_a_clear_error():
    cfg = decon(benchmarks=["aime25"], hub=False)
    with pytest.raises(BenchmarkUnavailable) as e:
        load_benchmarks(cfg, hub_loader=no_hub)
    msg = str(e.value)
    assert "prefilter.decontaminate.files.aime25" in msg and "hub is off" in msg
    assert "yentinglin/aime_2025" in msg  # how to export it where the Hub is reachable


def test_hub_unreachable_is_a_clear_error(monkeypatch):
    # The real datasets.load_dataset, offline: fails fast, and the message says what to do.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = decon(benchmarks=["math500"], hub=True)
    with pytest.raises(BenchmarkUnavailable) as e:
        load_benchmarks(cfg)
    msg = str(e.value)
    assert "HuggingFaceH4/MATH-500" in msg and "HF_HUB_OFFLINE" in msg
    assert "prefilter.decontaminate.files.math500" in msg


def test_local_file_wins_and_hub_fills_the_rest():
    asked = []

    def hub(name, spec):
        asked.append((name, spec.repo))
        return ["A completely separate problem about seven blue marbles in a large jar"]

    cfg = decon(benchmarks=["math500", "aime25"], files={"math500": MATH500}, hub=True)
    got = load_benchmarks(cfg, hub_loader=hub)
    assert list(got) == ["math500", "aime25"] and asked == [("aime25", "yentinglin/aime_2025")]
    assert len(got["math500"]) == 6


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"enabled": True, "benchmarks": []}, "no benchmarks"),  # nothing to check against
        ({"benchmarks": ["mmlu"]}, "benchmarks"),  # unknown benchmark name
        ({"columns": {"other": "q"}}, "neither in benchmarks nor in files"),
        ({"files": {"../x": "a.jsonl"}}, "plain name"),
        ({"ngrams": 8}, "ngrams"),  # typo: unknown keys are errors
    ],
)
def test_decontaminate_config_errors(kw, match):
    with pytest.raises(ValidationError, match=match):
        DecontaminateConfig(**kw)


def test_dedup_config_errors():
    with pytest.raises(ValidationError):
        DedupConfig(threshold=0)
    with pytest.raises(ValidationError):
        PrefilterConfig(dedupe={})


# --------------------------------------------------------------------------------------------
# apply_prefilters

def test_apply_prefilters_end_to_end():
    texts = [
        "What is 2+3?",  # 0 kept
        "what is 2+3",  # 1 exact duplicate of 0
        "What is 2 + 3 ?",  # 2 near duplicate of 0 (only spacing differs inside the formula)
        "What is 2+4?",  # 3 kept: another number
        "How many positive divisors of 7200 are perfect cubes?",  # 4 contaminated (math500)
        "How many positive divisors of 7200 are perfect cubes",  # 5 exact dup of 4: dedup runs first
        LONG,  # 6 kept
        LONG.replace("17 sheep", "19 sheep"),  # 7 kept: another quantity
        "",  # 8 kept (first empty problem)
        "  ",  # 9 exact duplicate of 8
    ]
    ps = prompts(texts)
    cfg = PrefilterConfig(decontaminate=decon(files={"math500": MATH500, "aime24": AIME24}))
    kept, counts, removed = apply_prefilters(ps, cfg, hub_loader=no_hub)
    assert [p.index for p in kept] == [0, 3, 6, 7, 8]
    assert counts == {"duplicate_exact": 3, "duplicate_near": 1, "contaminated:math500": 1}
    assert [(p.index, r) for p, r in removed] == [
        (1, "duplicate_exact"), (2, "duplicate_near"), (4, "contaminated:math500"),
        (5, "duplicate_exact"), (9, "duplicate_exact")]
    assert kept[0] is ps[0]  # the same objects, unmodified
    assert sum(counts.values()) + len(kept) == len(ps)


@pytest.mark.parametrize("exact,near,expected_kept", [
    (False, False, [0, 1, 2]),  # everything off: nothing removed
    (True, False, [0, 2]),  # exact only
    (False, True, [0]),  # near only: the exact copy is also a near copy
])
def test_apply_prefilters_switches(exact, near, expected_kept):
    ps = prompts(["Find $x$ if $2x+3=7$.", "find $x$ if $2x+3=7$", "Find x if 2x + 3 = 7"])
    kept, counts, _ = apply_prefilters(ps, PrefilterConfig(dedup=DedupConfig(exact=exact, near=near)))
    assert [p.index for p in kept] == expected_kept


def test_apply_prefilters_empty_and_progress():
    assert apply_prefilters([], PrefilterConfig()) == ([], {}, [])
    # The rich bar path (forced on for a small list) gives the same answer.
    ps = prompts(["a b c", "A b c.", "d e f"])
    assert apply_prefilters(ps, PrefilterConfig(), progress=True)[1] == {"duplicate_exact": 1}


def test_decontamination_disabled_never_loads(monkeypatch):
    # Disabled (the default): no benchmark is loaded, even with hub=True and no files.
    cfg = PrefilterConfig()
    assert cfg.decontaminate.enabled is False
    kept, counts, _ = apply_prefilters(prompts(["How many positive divisors of 7200 are perfect cubes?"]), cfg,
                                       hub_loader=no_hub)
    assert len(kept) == 1 and counts == {}
