"""An LLM judge for math answers that math-verify rejected: advisory, recorded beside its verdict.

OpenR1-Math-220k's recipe: math-verify rejects some right answers it cannot parse or compare
(units, words, unusual notation); a second model asked "are these two answers the same?"
recovered about 28k problems there. Here the judge's verdict is *recorded* (verdict name
`llm_judge`) and never decides acceptance (`advisory = True`): a dataset builder reads how often
it disagrees with math-verify, and filters on it later if they trust it.

Which traces it judges (`wants_prior`: it sees the verdicts of the verifiers listed before it):
by default those whose `math` verdict is False with reason `wrong_answer`, and only when nothing
else rejected them (a truncated trace is not worth a judge call). Every other trace gets
passed=None, reason "not_judged".

Verdicts: True "judge_equivalent", False "judge_not_equivalent", None "judge_unparseable" (no
verdict found in the reply), "judge_error" (the request failed), "not_judged".

The judge runs through the same engine layer as the teacher (factory.engines.ENGINES: "openai"
for any OpenAI-compatible server, "vllm" in-process, "scripted" for tests), built lazily in the
process that verifies, on a private event loop in one private thread (the engine's async
objects stay on one loop), and shut down in close(). An in-process vLLM judge holds a GPU in
the driver: prefer "openai" pointed at a served judge.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from factory.common.lru import LockedLRU
from factory.engines.base import ENGINES
from factory.engines.config import SamplingConfig, TeacherConfig
from factory.errors import UserError
from factory.verifiers.parsing import extract_answer, split_reasoning
from factory.types import Prompt, Trace, Verdict
from factory.verifiers.base import VERIFIERS, Verifier

DEFAULT_TEMPLATE = (
    "You are checking a student's final answer to a math problem against the reference answer.\n"
    "Decide whether the two answers are mathematically equivalent: the same number, expression, "
    "set, interval or statement, possibly written differently (a fraction and its decimal, "
    "reordered terms, an equivalent form, with or without units). Do not solve the problem "
    "again and do not judge the work: judge only whether the two final answers are equivalent.\n\n"
    "Problem:\n{problem}\n\n"
    "Reference answer:\n{reference}\n\n"
    "Student's answer:\n{answer}\n\n"
    "Explain briefly, then end with a last line that is exactly EQUIVALENT or NOT EQUIVALENT."
)
_FIELDS = ("problem", "reference", "answer")
_CACHE_SIZE = 50_000

# The last all-caps verdict word wins ("... not equivalent in form ... EQUIVALENT"); lower-case
# prose is ignored on purpose: "x is equivalent to" is not a verdict.
_KEYWORD = re.compile(r"(?<![A-Za-z])(NOT[\s_-]+EQUIVALENT|EQUIVALENT)(?![A-Za-z])")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}")
_BOXED_WORDS = {"yes": True, "equivalent": True, "true": True,
                "no": False, "not equivalent": False, "false": False}


def parse_judgement(reply: str) -> bool | None:
    """True/False from the judge's reply, or None when it holds no verdict.

    A `\\boxed{yes|no}` (also `\\boxed{\\text{Yes}}`, `equivalent`, `not equivalent`) is read
    first; otherwise the last all-caps EQUIVALENT / NOT EQUIVALENT. Only the visible answer of a
    thinking judge counts (what follows `</think>`).
    """
    _, answer, _, _ = split_reasoning(reply or "", None)
    boxed = extract_answer(answer, "boxed")
    if boxed is not None:
        word = _TEXT_CMD.sub(r"\1", boxed).strip().strip(".").strip().lower()
        word = " ".join(word.replace("_", " ").split())
        if word in _BOXED_WORDS:
            return _BOXED_WORDS[word]
    last = None
    for last in _KEYWORD.finditer(answer):
        pass
    if last is None:
        return None
    return not last.group(1).startswith("NOT")


def _advisory(name: str) -> bool:
    try:
        return bool(VERIFIERS.get(name).advisory)
    except KeyError:
        return False  # "engine", "input": never advisory


def render_question(template: str, problem: str, reference: str, answer: str) -> str:
    """The judge's question; placeholders are filled once, so braces in LaTeX values are safe."""
    return template.format(problem=problem, reference=reference, answer=answer)


class JudgeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    engine: str = "openai"  # a name in factory.engines.ENGINES: openai, vllm, scripted
    model: str  # the judge model (a served model name for openai; a dir/Hub id for vllm)
    revision: str | None = None
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)  # as teacher.engine_kwargs
    # Other teacher settings for the judge's engine (dtype, max_model_len, gpu_memory_utilization...).
    teacher: dict[str, Any] = Field(default_factory=dict)
    max_tokens: int = Field(default=1024, ge=1)
    temperature: float = Field(default=0.0, ge=0)
    seed: int = 0
    system: str | None = None
    template: str = DEFAULT_TEMPLATE  # placeholders: {problem}, {reference}, {answer}
    # Judge only traces whose verdict from this verifier failed with one of `only_reasons`;
    # None: judge every trace with an extracted answer and a reference.
    only_after: str | None = "math"
    only_reasons: list[str] = Field(default_factory=lambda: ["wrong_answer"])
    # Also require that no other (non-advisory) verdict failed: a truncated or malformed trace is
    # rejected whatever the judge says, so its call would be wasted.
    only_if_sole_failure: bool = True

    @field_validator("template")
    @classmethod
    def _template(cls, v: str) -> str:
        for name in ("reference", "answer"):
            if "{" + name + "}" not in v:
                raise ValueError(f"llm_judge template must contain {{{name}}}")
        try:
            v.format(**{f: "x" for f in _FIELDS})
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"llm_judge template is not a valid format string ({e}); placeholders are "
                             "{problem}, {reference}, {answer}; write literal braces as {{ }}") from None
        return v

    @model_validator(mode="after")
    def _engine_settings(self) -> "JudgeParams":
        try:
            ENGINES.get(self.engine)
        except KeyError as e:
            raise ValueError(f"llm_judge engine: {e.args[0]}") from None
        bad = sorted(set(self.teacher) & {"engine", "model", "revision", "engine_kwargs"})
        if bad:
            raise ValueError(f"llm_judge teacher may not set {bad}: they are llm_judge parameters of their own")
        TeacherConfig.model_validate(self.teacher)  # typos fail here, not when the engine starts
        return self

    def teacher_dict(self) -> dict[str, Any]:
        t = TeacherConfig.model_validate({**self.teacher, "engine": self.engine, "model": self.model,
                                          "revision": self.revision, "engine_kwargs": self.engine_kwargs})
        return t.model_dump(mode="json")

    def sampling_dict(self) -> dict[str, Any]:
        # One greedy sample: a judge should answer the same way every time it is asked.
        s = SamplingConfig(n=1, temperature=self.temperature, top_p=1.0, max_tokens=self.max_tokens, seed=self.seed)
        return s.model_dump(mode="json")


@VERIFIERS.register("llm_judge")
class LLMJudgeVerifier(Verifier):
    Params = JudgeParams
    version = "1"
    advisory = True
    wants_prior = True
    params: JudgeParams

    @classmethod
    def check_config(cls, params: dict[str, Any], earlier: Sequence[str]) -> BaseModel:
        checked = JudgeParams.model_validate(params)
        after = checked.only_after
        if after is not None and after not in earlier:
            raise ValueError(f"verifiers: llm_judge judges {after!r} rejects; list {after!r} before llm_judge")
        return checked

    def __init__(self, params: BaseModel, context: dict[str, Any] | None = None):
        super().__init__(params, context)
        self._engine: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        # Samples of one prompt often repeat the same wrong answer: ask once per distinct question.
        self._cache: LockedLRU[str, tuple[bool | None, str]] = LockedLRU(_CACHE_SIZE)
        self.requests = 0  # judge calls made (for tests and logs)

    # -- which traces ---------------------------------------------------------------------------

    def wants(self, trace: Trace, prior: Sequence[Verdict]) -> bool:
        p = self.params
        if trace.completion.error or trace.extracted_answer is None or not (trace.prompt.reference or "").strip():
            return False
        if p.only_after is None:
            return True
        target = next((v for v in prior if v.name == p.only_after), None)
        # A reason may name how the answer was found (`wrong_answer (boxed)`): match its first word.
        base = (target.reason or "").split(" (")[0] if target is not None else None
        if target is None or target.passed is not False or base not in p.only_reasons:
            return False
        if p.only_if_sole_failure:
            # Other advisory verdicts are never decisive, so they do not count here.
            if any(v.passed is not True for v in prior if v is not target and not _advisory(v.name)):
                return False
        return True

    def _check_order(self, prior: Sequence[Sequence[Verdict]]) -> None:
        name = self.params.only_after
        if name is None or not prior:
            return
        if not any(v.name == name for v in prior[0]):
            raise UserError(
                f"llm_judge: only_after is {name!r} but no {name!r} verdict comes before it; list "
                f"{name!r} before llm_judge in verifiers (or set only_after: null to judge every trace)"
            )

    # -- the verifier contract ------------------------------------------------------------------

    def verify(self, trace: Trace) -> Verdict:
        # Without prior verdicts only `only_after: null` can judge; otherwise nothing is known.
        return self.verify_many([trace])[0]

    def verify_many(self, traces: Sequence[Trace], prior: Sequence[Sequence[Verdict]] | None = None) -> list[Verdict]:
        if prior is not None:  # the runner's stage passes it always: a wrong order is an error
            self._check_order(prior)
        prior = prior if prior is not None else [[] for _ in traces]
        out: list[Verdict] = [self.verdict(None, "not_judged")] * len(traces)
        todo: dict[str, tuple[str, list[int]]] = {}  # cache key -> (question, trace positions)
        for i, (trace, pv) in enumerate(zip(traces, prior, strict=True)):
            if not self.wants(trace, pv):
                continue
            question = render_question(self.params.template, trace.prompt.problem or "",
                                       trace.prompt.reference or "", trace.extracted_answer or "")
            key = hashlib.sha256(question.encode("utf-8", "surrogatepass")).hexdigest()
            hit = self._cache.get(key)
            if hit is not None:
                out[i] = self.verdict(*hit)
            else:
                todo.setdefault(key, (question, []))[1].append(i)
        if todo:
            answers = self._run(self._ask({k: q for k, (q, _) in todo.items()}))
            for key, (_, positions) in todo.items():
                passed, reason = answers[key]
                if reason != "judge_error":  # a failed request may work next time
                    self._cache.put(key, (passed, reason))
                for i in positions:
                    out[i] = self.verdict(passed, reason)
        return out

    # -- the engine -----------------------------------------------------------------------------

    def _run(self, coro: Any) -> Any:
        """Run `coro` on the judge's own loop, in its own thread, whatever thread calls us (the
        runner's verify thread, or a caller that already runs an event loop)."""
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-judge")
        assert self._thread is not None and self._loop is not None
        return self._thread.submit(self._loop.run_until_complete, coro).result()

    async def _ask(self, questions: dict[str, str]) -> dict[str, tuple[bool | None, str]]:
        if self._engine is None:
            p = self.params
            engine = ENGINES.get(p.engine)(p.teacher_dict(), p.sampling_dict())
            await engine.start()  # a judge that cannot start is fatal: fail before judging nothing
            self._engine = engine
        keys = list(questions)
        prompts = [self._prompt(k, questions[k], i) for i, k in enumerate(keys)]
        by_id = {pr.prompt_id: k for pr, k in zip(prompts, keys, strict=True)}
        out: dict[str, tuple[bool | None, str]] = {k: (None, "judge_error") for k in keys}
        async for c in self._engine.generate([(pr, 0) for pr in prompts]):
            self.requests += 1
            key = by_id.get(c.prompt_id)
            if key is None:
                continue
            if c.error or c.finish_reason == "error":
                out[key] = (None, "judge_error")
                continue
            # With reasoning_content set, text is already the visible answer alone.
            judged = parse_judgement(c.text)
            out[key] = (None, "judge_unparseable") if judged is None else (
                (True, "judge_equivalent") if judged else (False, "judge_not_equivalent"))
        return out

    def _prompt(self, key: str, question: str, index: int) -> Prompt:
        messages = ([{"role": "system", "content": self.params.system}] if self.params.system else [])
        messages.append({"role": "user", "content": question})
        # problem = the question itself: engines that key on it (scripted) see what is asked.
        return Prompt(prompt_id=f"judge-{key[:24]}", index=index, problem=question, reference=None,
                      messages=messages, source="llm_judge")

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["advisory"] = True
        # engine_kwargs may be long (a scripted table) and are not needed to read a card.
        d["params"]["engine_kwargs"] = sorted(self.params.engine_kwargs)
        return d

    def close(self) -> None:
        with self._lock:
            engine, loop, thread = self._engine, self._loop, self._thread
            self._engine = self._loop = self._thread = None
        try:
            if engine is not None and loop is not None and thread is not None:
                thread.submit(loop.run_until_complete, engine.shutdown()).result()
        finally:
            if thread is not None:
                if loop is not None:
                    thread.submit(loop.close).result()
                thread.shutdown(wait=True)


__all__ = ["DEFAULT_TEMPLATE", "JudgeParams", "LLMJudgeVerifier", "parse_judgement", "render_question"]
