"""The degeneration rules shared by the engines' early abort and the `repetition` verifier:
the online forms (incremental n-grams, the gated tail check, AbortWatch) must give exactly the
offline verdict on the same text, however the text arrives."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from factory.degeneration import (AbortWatch, EarlyAbortConfig, NgramCounter, RepetitionRule, _z_function,
                                  duplicate_ngram_ratio, early_abort_detectors, replay, tail_loop)

LOOP_LINE = "Wait, let me recompute 3 + 4 = 7 once more.\n"
PROSE = ("We add the two numbers column by column, carrying where needed, and then check the sum "
         "by subtracting one addend from it. ")


def _tail_loop_ungated(text: str, window: int, min_repeats: int, min_chars: int):
    """The definition without the find() shortcut: what the shortcut must never change."""
    tail = text.rstrip()[-window:]
    if len(tail) < min_chars:
        return None
    r = tail[::-1]
    z = _z_function(r)
    for p in range(1, len(r) // min_repeats + 1):
        run = p + z[p]
        if run >= min_chars and run >= p * min_repeats:
            return p, run
    return None


def _random_text(rng: random.Random) -> str:
    vocab = ["a", "b", "c", "x", "=", "1", "+", "\n", "the", "sum"]
    words = [rng.choice(vocab) for _ in range(rng.randint(0, 400))]
    if rng.random() < 0.5:  # end in a loop of a random unit, sometimes cut mid-unit
        unit = " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 12))) + rng.choice([" ", "\n", ""])
        loop = unit * rng.randint(1, 60)
        words.append(loop[: rng.randint(1, len(loop))])
    return " ".join(words) + rng.choice(["", " ", "\n  "])


@pytest.mark.parametrize("min_repeats,min_chars", [(5, 200), (2, 10), (3, 1), (10, 64)])
def test_tail_loop_shortcut_changes_nothing(min_repeats, min_chars):
    rng = random.Random(min_repeats * 1000 + min_chars)
    for _ in range(400):
        text = _random_text(rng)
        assert tail_loop(text, 2048, min_repeats, min_chars) == _tail_loop_ungated(text, 2048, min_repeats, min_chars)


def test_tail_loop_skips_the_linear_pass_for_text_that_does_not_repeat_its_ending(monkeypatch):
    # The online checks run every few tokens: prose must cost a find(), not the z-function.
    import factory.degeneration as d

    def z_function(s):
        raise AssertionError("the z-function ran on text whose ending occurs nowhere earlier")

    prose = "".join(f"Step {i}: we add {i} and {i + 1} to get {2 * i + 1}. " for i in range(300))
    monkeypatch.setattr(d, "_z_function", z_function)
    assert d.tail_loop(prose, 8192, 5, 200) is None
    with pytest.raises(AssertionError):
        d.tail_loop(prose + LOOP_LINE * 10, 8192, 5, 200)


@pytest.mark.parametrize("n", [2, 3, 10])
def test_ngram_counter_equals_offline_ratio_at_every_prefix(n):
    rng = random.Random(n)
    for _ in range(60):
        text = _random_text(rng)
        counter = NgramCounter(n)
        pos = 0
        while pos < len(text):  # the text arrives in chunks that cut words anywhere
            pos = min(len(text), pos + rng.randint(1, 40))
            assert counter.ratio(text[:pos]) == duplicate_ngram_ratio(text[:pos].split(), n)


def test_watch_agrees_with_the_verifier_rule_on_every_prefix():
    rule = RepetitionRule(min_ngrams=20, tail_min_chars=60)
    cfg = EarlyAbortConfig(every_tokens=1, repetition=rule)
    rng = random.Random(7)
    for _ in range(60):
        text = _random_text(rng)
        watch = AbortWatch(cfg)
        pos = tokens = 0
        while pos < len(text):
            pos, tokens = min(len(text), pos + rng.randint(1, 30)), tokens + 1
            fired = watch.update(text[:pos], tokens)
            assert fired == ("repetition" if rule.check(text[:pos]) else None)
            if fired:
                break


def test_watch_fires_on_a_loop_and_not_on_prose():
    cfg = EarlyAbortConfig(every_tokens=16)
    loop = PROSE + LOOP_LINE * 30
    assert replay(cfg, [(loop[:i], i // 4) for i in range(1, len(loop) + 1)]) == "repetition"
    prose = "".join(f"Step {i}: we add {i} and {i + 1} to get {2 * i + 1}. " for i in range(200))
    assert replay(cfg, [(prose[:i], i // 4) for i in range(1, len(prose) + 1)]) is None


def test_watch_fires_at_the_first_check_after_the_loop_qualifies():
    # Checks happen once per every_tokens: a loop is seen at the first check after it is long
    # enough to count (5 copies, 200 characters), never before.
    cfg = EarlyAbortConfig(every_tokens=10)
    watch = AbortWatch(cfg)
    texts, fired_at = [PROSE], None
    for tokens in range(1, 200):  # four "tokens" per copy of the loop line
        texts.append(texts[-1] + LOOP_LINE[(tokens - 1) % 4 * 11:][:11 if tokens % 4 else None])
        if watch.update(texts[tokens], tokens):
            fired_at = tokens
            break
    assert fired_at is not None and fired_at % 10 == 0
    assert RepetitionRule().check(texts[fired_at]) is not None
    assert RepetitionRule().check(texts[fired_at - 10]) is None


def test_think_budget():
    cfg = EarlyAbortConfig(every_tokens=1, repetition=None, think_budget=100)
    assert AbortWatch(cfg).update("<think>still going", 99) is None
    assert AbortWatch(cfg).update("<think>still going", 100) == "think_budget"
    assert AbortWatch(cfg).update("<think>done</think> answer", 500) is None
    assert early_abort_detectors(cfg) == ["think_budget"]
    assert early_abort_detectors(EarlyAbortConfig()) == ["repetition"]


def test_config_is_checked():
    with pytest.raises(ValidationError):
        EarlyAbortConfig.model_validate({"every_tokens": 0})
    with pytest.raises(ValidationError):
        EarlyAbortConfig.model_validate({"repetition": {"tail_min_repeat": 3}})  # typo: unknown key
    assert EarlyAbortConfig.model_validate({"repetition": None}).repetition is None
