"""From raw completion text to a Trace: split the reasoning off, pull out the final answer.

Everything here is plain string scanning in linear time: it runs on every completion in the
driver process, and teachers do write 100k-character traces and binary garbage.
"""

from __future__ import annotations

import re

from factory.types import Completion, Prompt, Trace

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

EXTRACTION_MODES: tuple[str, ...] = ("boxed", "answer_is", "boxed_or_answer_is", "last_number")


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
    i = start + cmd_len
    n = len(text)
    while i < n and text[i] in " \t":
        i += 1
    if i >= n:
        return None
    if text[i] != "{":
        # `\boxed 5`: TeX takes one token; accept a bare run up to whitespace or `$`.
        if text[i].isalpha() and i == start + cmd_len:
            return None  # `\boxedfoo` is another command, not a box
        m = re.match(r"[^\s$]+", text[i:])
        return m.group(0) if m else None
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
                return content or None
        j += 1
    return None  # unbalanced: the box never closed (often a truncated trace)


# "The (final) answer is X" / "Answer: X". Anchored on the literal word so the scan stays linear.
# Only the marker is matched, so a later marker on the same line is still found.
_ANSWER_IS = re.compile(
    r"(?:the\s{1,10}(?:final\s{1,10})?answer\s{1,10}is\s{0,10}:?|\banswer\s{0,10}:)",
    re.IGNORECASE,
)


def _clean_answer(raw: str) -> str | None:
    s = raw.strip()
    boxed = _last_boxed(s)
    if boxed is not None:
        return boxed
    s = s.strip("*").strip()  # markdown bold around the answer
    if s.startswith("$"):
        # `$\frac{1}{2}$.` -> the math inside the first math span
        inner = s.lstrip("$")
        end = inner.find("$")
        s = inner[:end] if end >= 0 else inner
    else:
        # Cut at the end of the sentence; a period inside a number ("3.5") has no space after it.
        m = re.search(r"\.(\s|$)", s)
        if m:
            s = s[: m.start()]
    s = s.strip().rstrip(".").strip().strip("*").strip()
    return s or None


def _answer_is(text: str) -> str | None:
    last = None
    for last in _ANSWER_IS.finditer(text):
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


def extract_answer(text: str, mode: str = "boxed") -> str | None:
    """The final answer in `text`, or None. Modes: see EXTRACTION_MODES."""
    if mode not in EXTRACTION_MODES:
        raise ValueError(f"unknown extraction mode {mode!r}; modes are: {', '.join(EXTRACTION_MODES)}")
    if not text:
        return None
    if mode == "boxed":
        return _last_boxed(text)
    if mode == "answer_is":
        return _answer_is(text)
    if mode == "boxed_or_answer_is":
        boxed = _last_boxed(text)
        return boxed if boxed is not None else _answer_is(text)
    return _last_number(text)


def make_trace(prompt: Prompt, completion: Completion, extraction: str = "boxed") -> Trace:
    """Parse one completion against its prompt; the answer is looked for in the visible answer."""
    reasoning, answer_text, has_tags, balanced = split_reasoning(
        completion.text or "", completion.reasoning_content
    )
    return Trace(
        prompt=prompt,
        completion=completion,
        reasoning=reasoning,
        answer_text=answer_text,
        has_think_tags=has_tags,
        think_tags_balanced=balanced,
        extracted_answer=extract_answer(answer_text, extraction),
    )
