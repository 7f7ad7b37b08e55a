"""The llm_judge verifier: advisory, judges only math's wrong answers, through the engine layer.

The scripted engine plays the judge (it keys on Prompt.problem, which is the judge's question);
one test drives the real openai engine against an HTTP server on loopback. The math verdicts
come from the real math verifier.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from factory.cli import main
from factory.config import ConfigError, load_config
from factory.errors import UserError
from factory.verifiers.parsing import make_trace
from factory.verifiers.stage import VerifyStage
from factory.types import Completion, Prompt, Trace
from factory.verifiers import VERIFIERS
from factory.verifiers.llm_judge import DEFAULT_TEMPLATE, JudgeParams, LLMJudgeVerifier, parse_judgement, render_question


def q(problem: str, reference: str, answer: str) -> str:
    return render_question(DEFAULT_TEMPLATE, problem, reference, answer)


def trace(problem: str, reference: str, text: str, finish: str = "stop", sample: int = 0,
          error: str | None = None) -> Trace:
    p = Prompt(f"id-{problem}", 0, problem, reference, [{"role": "user", "content": problem}], "test")
    return make_trace(p, Completion(p.prompt_id, sample, text, finish, num_tokens=5, error=error))


def stage(answers: dict[str, str], **judge: Any) -> VerifyStage:
    spec = {"name": "llm_judge", "engine": "scripted", "model": "judge",
            "engine_kwargs": {"answers": answers, "default": "no idea"}, **judge}
    cfg = load_config(None, data={"source": {"builtin": "arithmetic"},
                                  "verifiers": [{"name": "truncation"}, {"name": "math"}, spec]})
    return VerifyStage(cfg, workers=1)


@pytest.mark.parametrize("reply, expected", [
    ("They are the same.\nEQUIVALENT", True),
    ("Different values.\nNOT EQUIVALENT", False),
    ("NOT_EQUIVALENT", False),
    ("at first EQUIVALENT? no: NOT EQUIVALENT", False),  # the last verdict wins
    ("NOT EQUIVALENT at first glance, but on reflection: EQUIVALENT", True),
    ("\\boxed{yes}", True),
    ("\\boxed{\\text{No}}", False),
    ("\\boxed{Not Equivalent}", False),
    ("<think>maybe NOT EQUIVALENT</think>\nEQUIVALENT", True),  # only the visible answer counts
    ("<think>EQUIVALENT</think>\n", None),
    ("x is equivalent to y", None),  # prose, not a verdict
    ("INEQUIVALENT", None),
    ("\\boxed{42}", None),
    ("", None),
])
def test_parse_judgement(reply: str, expected: bool | None) -> None:
    assert parse_judgement(reply) is expected


@pytest.mark.parametrize("params, message", [
    ({"engine": "scripted"}, "model"),
    ({"engine": "nope", "model": "m"}, "unknown engine 'nope'"),
    ({"engine": "scripted", "model": "m", "template": "{problem} {answer}"}, "{reference}"),
    ({"engine": "scripted", "model": "m", "template": "{reference} {answer} {oops}"}, "placeholders"),
    ({"engine": "scripted", "model": "m", "teacher": {"dtyp": "x"}}, "dtyp"),
    ({"engine": "scripted", "model": "m", "teacher": {"model": "x"}}, "llm_judge parameters"),
    ({"engine": "scripted", "model": "m", "temperatur": 0}, "temperatur"),
])
def test_params_fail_early(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="llm_judge|model|dtyp|temperatur") as e:
        load_config(None, data={"source": {"builtin": "arithmetic"},
                                "verifiers": [{"name": "math"}, {"name": "llm_judge", **params}]})
    assert message in str(e.value)


def test_registered_advisory_and_greedy() -> None:
    cls = VERIFIERS.get("llm_judge")
    assert cls is LLMJudgeVerifier and cls.advisory and cls.wants_prior
    p = JudgeParams(model="m", engine="scripted")
    assert p.sampling_dict()["temperature"] == 0 and p.sampling_dict()["n"] == 1
    assert p.teacher_dict()["model"] == "m" and p.teacher_dict()["engine"] == "scripted"


def test_judge_is_recorded_but_never_decides() -> None:
    prob = "What is 6 * 2?"
    answers = {
        q(prob, "12", "13"): "Thirteen is not twelve... but EQUIVALENT",  # a wrong judge: must not matter
        q(prob, "12", "14"): "NOT EQUIVALENT",
        q(prob, "12", "15"): "I cannot decide.",
        q(prob, "12", "16"): "!error",
    }
    st = stage(answers)
    judge = next(v for v in st.verifiers if v.name == "llm_judge")
    traces = [
        trace(prob, "12", "so \\boxed{12}"),  # math correct
        trace(prob, "12", "so \\boxed{13}", sample=1),  # math wrong, judge says equivalent
        trace(prob, "12", "so \\boxed{13}", sample=2),  # the same question again: asked once
        trace(prob, "12", "so \\boxed{14}", sample=3),
        trace(prob, "12", "so \\boxed{15}", sample=4),
        trace(prob, "12", "so \\boxed{16}", sample=5),
        trace(prob, "12", "so \\boxed{13} and then", finish="length", sample=6),  # truncated
        trace(prob, "12", "no box at all", sample=7),  # math: no_answer
    ]
    try:
        rows = st.rows_for_traces(traces)
    finally:
        st.close()
    got = [(r["accepted"], r["reject_reason"], next(v for v in r["verdicts"] if v["name"] == "llm_judge"))
           for r in rows]
    assert got == [
        (True, None, {"name": "llm_judge", "passed": None, "reason": "not_judged"}),
        (False, "math:wrong_answer", {"name": "llm_judge", "passed": True, "reason": "judge_equivalent"}),
        (False, "math:wrong_answer", {"name": "llm_judge", "passed": True, "reason": "judge_equivalent"}),
        (False, "math:wrong_answer", {"name": "llm_judge", "passed": False, "reason": "judge_not_equivalent"}),
        (False, "math:wrong_answer", {"name": "llm_judge", "passed": None, "reason": "judge_unparseable"}),
        (False, "math:wrong_answer", {"name": "llm_judge", "passed": None, "reason": "judge_error"}),
        (False, "truncation:truncated", {"name": "llm_judge", "passed": None, "reason": "not_judged"}),
        (False, "math:no_answer", {"name": "llm_judge", "passed": None, "reason": "not_judged"}),
    ]
    # the judge verdict sits after math's, as the verifiers are listed
    assert [v["name"] for v in rows[1]["verdicts"]] == ["truncation", "math", "llm_judge"]
    assert judge.requests == 4  # 13 (once), 14, 15, 16


def test_judge_every_trace_when_only_after_is_null() -> None:
    prob = "Half of 1?"
    st = stage({q(prob, "1/2", "0.5"): "EQUIVALENT"}, only_after=None)
    try:
        rows = st.rows_for_traces([trace(prob, "1/2", "\\boxed{0.5}")])
    finally:
        st.close()
    assert rows[0]["accepted"] is True  # math accepted it; the judge agrees, advisory either way
    assert rows[0]["verdicts"][-1] == {"name": "llm_judge", "passed": True, "reason": "judge_equivalent"}


@pytest.mark.parametrize("order", [["llm_judge", "math"], ["truncation", "llm_judge"]])
def test_judge_without_math_before_it_is_an_error(order: list[str]) -> None:
    specs = {"llm_judge": {"name": "llm_judge", "engine": "scripted", "model": "m"},
             "math": {"name": "math"}, "truncation": {"name": "truncation"}}
    # caught when the config is read, before any engine starts
    with pytest.raises(UserError, match="list 'math' before llm_judge"):
        load_config(None, data={"source": {"builtin": "arithmetic"}, "verifiers": [specs[n] for n in order]})
    # called alone, without the stage's prior verdicts, it cannot know: nothing is judged
    judge = VERIFIERS.get("llm_judge")(JudgeParams(engine="scripted", model="m"), {})
    assert judge.verify(trace("p", "1", "\\boxed{2}")).reason == "not_judged"


def test_judge_works_from_inside_a_running_event_loop() -> None:
    """The runner verifies in a thread, but a caller may already run a loop: the judge's engine
    lives on its own loop in its own thread either way, and close() shuts it down."""
    prob = "p?"
    st = stage({q(prob, "2", "3"): "NOT EQUIVALENT"})
    judge = next(v for v in st.verifiers if v.name == "llm_judge")

    async def caller() -> list[dict[str, Any]]:
        return st.rows_for_traces([trace(prob, "2", "\\boxed{3}")])

    rows = asyncio.run(caller())
    assert rows[0]["verdicts"][-1]["reason"] == "judge_not_equivalent"
    assert judge._engine is not None
    st.close()
    assert judge._engine is None and judge._loop is None
    st.close()  # twice is harmless


# ----------------------------------------------------------------------------- openai engine


class _Server:
    """A minimal OpenAI-compatible server on loopback, in its own thread and loop."""

    def __init__(self, reply: str):
        self.reply, self.bodies = reply, []
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        from aiohttp import web

        async def models(request: web.Request) -> web.Response:
            return web.json_response({"object": "list", "data": [{"id": "judge-model", "object": "model"}]})

        async def chat(request: web.Request) -> web.Response:
            body = await request.json()
            self.bodies.append(body)
            return web.json_response({
                "id": "x", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": self.reply},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 50, "completion_tokens": 3, "total_tokens": 53}})

        app = web.Application()
        app.router.add_get("/v1/models", models)
        app.router.add_post("/v1/chat/completions", chat)
        runner = web.AppRunner(app)
        await runner.setup()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        await site.start()
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> "_Server":
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)  # type: ignore[union-attr]
        self._thread.join(10)


def test_judge_through_the_openai_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUDGE_KEY", "sk-judge")
    prob = "Simplify 2/4."
    with _Server("The forms differ only in notation.\nEQUIVALENT") as server:
        st = stage({}, engine="openai", model="judge-model", system="You are a strict grader.",
                   engine_kwargs={"base_url": f"http://127.0.0.1:{server.port}/v1", "api_key_env": "JUDGE_KEY",
                                  "send_seed": False})
        try:
            rows = st.rows_for_traces([trace(prob, "\\frac{1}{2}", "\\boxed{3}"),  # math: wrong
                                       trace(prob, "\\frac{1}{2}", "\\boxed{0.5}")])  # math: right
        finally:
            st.close()
    assert rows[0]["verdicts"][-1] == {"name": "llm_judge", "passed": True, "reason": "judge_equivalent"}
    assert rows[0]["accepted"] is False and rows[0]["reject_reason"] == "math:wrong_answer"
    assert rows[1]["accepted"] is True and rows[1]["verdicts"][-1]["reason"] == "not_judged"
    assert len(server.bodies) == 1  # only the math reject was judged
    body = server.bodies[0]
    assert body["model"] == "judge-model" and body["temperature"] == 0
    assert body["messages"][0] == {"role": "system", "content": "You are a strict grader."}
    asked = body["messages"][1]["content"]
    assert asked == q(prob, "\\frac{1}{2}", "3")
    assert "Reference answer:\n\\frac{1}{2}" in asked and "Student's answer:\n3" in asked


# ----------------------------------------------------------------------------- factory verify


def test_factory_verify_with_a_judge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"problem": "Twice 21?", "completion": "\\boxed{42}", "reference": "42", "finish_reason": "stop"},
        {"problem": "Twice 21?", "completion": "\\boxed{41}", "reference": "42", "finish_reason": "stop"},
    ]
    src = tmp_path / "traces.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tmp_path / "judge.yaml"
    config.write_text(yaml.safe_dump({"verifiers": [
        {"name": "truncation"}, {"name": "math"},
        {"name": "llm_judge", "engine": "scripted", "model": "judge",
         "engine_kwargs": {"answers": {q("Twice 21?", "42", "41"): "EQUIVALENT"}}}]}))
    assert main(["verify", str(src), "--config", str(config), "--workers", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "llm_judge passed on rejected rows (advisory)" in out and "llm_judge (advisory)" in out
    t = pq.read_table(tmp_path / "traces.verified.parquet").to_pylist()
    assert [r["accepted"] for r in t] == [True, False]
    assert t[1]["reject_reason"] == "math:wrong_answer"
    assert t[1]["verdicts"][-1] == {"name": "llm_judge", "passed": True, "reason": "judge_equivalent"}
