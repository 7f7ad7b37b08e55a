"""From raw completion text to a Trace: split the reasoning off, pull out the final answer.

Everything here is plain string scanning in linear time: it runs on every completion in the
driver process, and teachers do write 100k-character traces and binary garbage.
"""

from __future__ import annotations

import re

from factory.types import Completion, Prompt, Trace

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

# "final": what R1-style teachers write -- every box of the final answer, or a "final answer is"
# statement written after the last box; the math verifier then falls back to math-verify's own
# extraction when neither is there (see docs/verifiers.md).
EXTRACTION_MODES: tuple[str, ...] = ("final", "boxed", "answer_is", "boxed_or_answer_is", "last_number")
DEFAULT_EXTRACTION = "final"


def split_reasoning(text: str, reasoning_content: str | None) -> tuple[str, str, bool, bool]:
    """Return (reasoning, answer_text, has_think_tags, think_tags_balanced).

    - The engine already separated the reasoning (vLLM reasoning parser): trust it.
    - `<think>...</think>`, or a lone `</think>` (R1 distills: the chat template wrote the opening
      tag into the prompt): reasoning is before the closing tag, the answer after it.
    - `<think>` never closed (cut off while thinking): all of it is reasoning, no answer.
    - No tags at all: the text is both the reasoning and the answer text, so the final
      \\boxed{} can still be found by the extractor.
    """
    text = text or ""
    if reasoning_content is not None:
        has_tags = bool(reasoning_content.strip())
        # Tags left in the visible part mean the engine's parser and the model disagreed.
        balanced = THINK_OPEN not in text and THINK_CLOSE not in text
        return reasoning_content.strip(), text.strip(), has_tags, balanced

    opens = text.count(THINK_OPEN)
    closes = text.count(THINK_CLOSE)
    if closes:
        # The last closing tag ends the thinking whatever happened before it; only a single
        # well-ordered pair (or a lone close whose opening tag sat in the prompt) is "balanced".
        cut = text.rfind(THINK_CLOSE)
        before, answer = text[:cut], text[cut + len(THINK_CLOSE) :]
        first_open = text.find(THINK_OPEN)
        if opens == 1 and closes == 1 and first_open < cut:
            return before[first_open + len(THINK_OPEN) :].strip(), answer.strip(), True, True
        if opens == 0 and closes == 1:
            return before.strip(), answer.strip(), True, True
        start = first_open + len(THINK_OPEN) if 0 <= first_open < cut else 0
        return before[start:].strip(), answer.strip(), True, False
    if opens:
        # Thinking never ended: there is no visible answer to judge.
        start = text.find(THINK_OPEN) + len(THINK_OPEN)
        return text[start:].strip(), "", True, False
    stripped = text.strip()
    return stripped, stripped, False, False


# --- answer extraction -------------------------------------------------------------------------

_BOX_COMMANDS = ("\\boxed", "\\fbox")


def _box_at(text: str, start: int, cmd_len: int) -> tuple[str | None, int]:
    """(content, end) of the box whose command starts at `start`; content None when empty,
    unbalanced or not a box at all (`\\boxedfoo`)."""
    i = start + cmd_len
    n = len(text)
    while i < n and text[i] in " \t":
        i += 1
    if i >= n:
        return None, n
    if text[i] != "{":
        # `\boxed 5`: TeX takes one token; accept a bare run up to whitespace or `$`.
        if text[i].isalpha() and i == start + cmd_len:
            return None, i  # `\boxedfoo` is another command, not a box
        m = re.match(r"[^\s$]+", text[i:])
        return (m.group(0), i + m.end()) if m else (None, i)
    depth = 0
    j = i
    while j < n:
        c = text[j]
        if c == "\\":
            j += 2  # `\{` and `\}` are literal braces (set notation), not grouping
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                content = text[i + 1 : j].strip()
                return content or None, j + 1
        j += 1
    return None, n  # unbalanced: the box never closed (often a truncated trace)


_BOX_START = re.compile(r"\\+(?:boxed|fbox)")  # `\\\\boxed`: an escaped backslash in JSON-ish text


def _boxes(text: str) -> list[tuple[int, int, str | None]]:
    """Every box in `text` as (start, end, content), in order; linear in len(text)."""
    out: list[tuple[int, int, str | None]] = []
    pos = 0
    while True:
        m = _BOX_START.search(text, pos)
        if m is None:
            return out
        content, end = _box_at(text, m.start(), m.end() - m.start())
        out.append((m.start(), end, content))
        pos = max(end, m.end())


def _last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} / \\fbox{...}; None when absent, empty or unbalanced."""
    start = -1
    cmd_len = 0
    for cmd in _BOX_COMMANDS:
        at = text.rfind(cmd)
        if at > start:
            start, cmd_len = at, len(cmd)
    if start < 0:
        return None
    return _box_at(text, start, cmd_len)[0]


# What may stand between two boxes of one answer: `\boxed{1}, \boxed{2} and \boxed{3}`,
# `\boxed{-2} \quad \text{and} \quad \boxed{1}`, `$\boxed{a}$ or $\boxed{b}$`.
_BOX_JOIN = re.compile(
    r"(?:[^A-Za-z0-9\\]|\\[,;:! ]|\\q?quad|\\text\{[^{}$]*\}|\\(?:\(|\)|\[|\]|\\)|\band\b|\bor\b)*"
)
# `\\boxed{1} papers and \\boxed{2} bins`: one unit word, then "and" or a comma...
_UNIT_JOIN = re.compile(
    r"\W*(?:[A-Za-z]+\s*(?:,|\band\b|\bor\b)|(?:,|\band\b)\W*[A-Za-z](?:_\{?\w+\}?)?\s*=)\W*"
)  # ... or a label: `y_1 = \\boxed{a} \\) and \\( y_2 = \\boxed{b}`
_MAX_JOIN = 40  # characters between two boxes of one answer


def _final_boxes(text: str) -> tuple[str | None, int, int]:
    """The boxes of the final answer joined as a list, the end of the last box (-1: none) and
    how many boxes were joined.

    Only boxes that follow each other with nothing but separators between them belong to the
    final answer: a box earlier in the text is a step, or a first try the teacher corrected."""
    boxes = _boxes(text)
    if not boxes:
        return None, -1, 0
    group = [boxes[-1]]
    for prev in reversed(boxes[:-1]):
        gap = text[prev[1] : group[0][0]]
        if len(gap) > _MAX_JOIN or not (_BOX_JOIN.fullmatch(gap) or _UNIT_JOIN.fullmatch(gap)):
            break
        group.insert(0, prev)
    contents: list[str] = []
    for _, _, c in group:
        if c is not None and c not in contents:  # `\boxed{3} \boxed{3}` is one answer
            contents.append(c)
    if not contents:
        return None, boxes[-1][1], 0
    return ", ".join(contents), boxes[-1][1], len(contents)


# "The (final) answer is X" / "Answer: X". Anchored on the literal word so the scan stays linear.
# Only the marker is matched, so a later marker on the same line is still found.
_ANSWER_IS = re.compile(
    r"(?:the\s{1,10}(?:final\s{1,10})?answer\s{1,10}is\s{0,10}:?|\banswer\s{0,10}:)",
    re.IGNORECASE,
)


# `$12$ and $13$`, `$1$, $2$ or $3$`: several math spans joined by separators only.
_SPAN_LIST = re.compile(r"\$[^$]+\$(?:\s*(?:,|\band\b|\bor\b)\s*\$[^$]+\$)+")


def _clean_answer(raw: str) -> str | None:
    s = raw.strip()
    boxed = _last_boxed(s)
    if boxed is not None:
        return boxed
    s = s.strip("*").strip()  # markdown bold around the answer
    s = s.replace('\\"', '"').strip('"').strip()  # `is "$12$ and $13$"`
    if s.startswith("$"):
        # `$\frac{1}{2}$.` -> the math inside the first math span; `$12$ and $13$` -> both
        spans = _SPAN_LIST.match(s)
        if spans:
            s = ", ".join(m.strip() for m in re.findall(r"\$([^$]*)\$", spans.group(0)))
        else:
            inner = s.lstrip("$")
            end = inner.find("$")
            s = inner[:end] if end >= 0 else inner
    else:
        # Cut at the end of the sentence; a period inside a number ("3.5") has no space after it.
        m = re.search(r"\.(\s|$)", s)
        if m:
            s = s[: m.start()]
    s = s.strip().rstrip(".").strip().strip("*").strip()
    if _PROSE.search(re.sub(r"\$[^$]*\$|\\text\{[^{}]*\}", " ", s)):
        return None  # "The largest $n$ is 34": a sentence, for math-verify's extraction to read
    return s or None


# Two words in a row outside math: a sentence, not an answer (`5 apples` is still an answer).
_PROSE = re.compile(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}")


def _answer_is(text: str, after: int = 0) -> str | None:
    last = None
    for last in _ANSWER_IS.finditer(text, after):
        pass
    if last is None:
        return None
    rest = text[last.end() : last.end() + 2000].lstrip()  # "The answer is:\n\n$$42$$"
    return _clean_answer(rest.split("\n", 1)[0])


_NUMBER = re.compile(
    r"-?\\[dt]?frac\{\s*\d+\s*\}\{\s*\d+\s*\}"  # \frac{1}{2}
    r"|-?\d+\s*/\s*\d+"  # 1/2
    r"|-?\d{1,3}(?:,\d{3})+(?:\.\d+)?"  # 1,234.5
    r"|-?\d+(?:\.\d+)?"  # 12, 3.25
)


def _last_number(text: str) -> str | None:
    last = None
    for last in _NUMBER.finditer(text):
        pass
    if last is None:
        return None
    s = last.group(0)
    if "frac" not in s:
        s = s.replace(",", "").replace(" ", "")
    return s


def extract_final(text: str, mode: str = DEFAULT_EXTRACTION) -> tuple[str | None, str | None]:
    """(answer, how): the final answer in `text` and the extraction that found it ("boxed",
    "boxes" for several, "answer_is", "last_number"); (None, None) when there is none.
    Modes: see EXTRACTION_MODES."""
    if mode not in EXTRACTION_MODES:
        raise ValueError(f"unknown extraction mode {mode!r}; modes are: {', '.join(EXTRACTION_MODES)}")
    if not text:
        return None, None
    found: str | None
    if mode == "final":
        boxed, end, count = _final_boxes(text)
        # "... \boxed{5}. Wait, I made an error: the final answer is $10,455$." -- the later
        # statement wins; one that only repeats the box (`is \boxed{5}`) was read as the box.
        stated = _answer_is(text, end) if end >= 0 else _answer_is(text)
        if stated is not None:
            return stated, "answer_is"
        if boxed is not None:
            return boxed, "boxes" if count > 1 else "boxed"
        return None, None
    if mode == "boxed":
        found = _last_boxed(text)
        return found, "boxed" if found is not None else None
    if mode == "answer_is":
        found = _answer_is(text)
        return found, "answer_is" if found is not None else None
    if mode == "boxed_or_answer_is":
        found = _last_boxed(text)
        if found is not None:
            return found, "boxed"
        found = _answer_is(text)
        return found, "answer_is" if found is not None else None
    found = _last_number(text)
    return found, "last_number" if found is not None else None


def reference_answer(reference: str) -> str:
    """A reference written as a worked solution (MATH, NuminaMath) stands for its final boxes,
    or its "final answer is" statement."""
    if "box" not in reference and len(reference) < 200:
        return reference
    found, _ = extract_final(reference, DEFAULT_EXTRACTION)
    return found if found is not None else reference


def extract_answer(text: str, mode: str = DEFAULT_EXTRACTION) -> str | None:
    """The final answer in `text`, or None. Modes: see EXTRACTION_MODES."""
    return extract_final(text, mode)[0]


def make_trace(prompt: Prompt, completion: Completion, extraction: str = DEFAULT_EXTRACTION) -> Trace:
    """Parse one completion against its prompt; the answer is looked for in the visible answer."""
    reasoning, answer_text, has_tags, balanced = split_reasoning(
        completion.text or "", completion.reasoning_content
    )
    answer, how = extract_final(answer_text, extraction)
    return Trace(
        prompt=prompt,
        completion=completion,
        reasoning=reasoning,
        answer_text=answer_text,
        has_think_tags=has_tags,
        think_tags_balanced=balanced,
        extracted_answer=answer,
        extraction=how,
    )
