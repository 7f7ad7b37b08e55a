"""The openai engine against a real HTTP server on loopback (aiohttp.web) that plays a script.

Each test starts the server in its own event loop; the server records every request (body,
headers, arrival time) and how many were being served at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from factory.engines import ENGINES
from factory.engines.openai import OpenAIEngine, OpenAIEngineError, _parse_retry_after, public_url
from factory.engines.seeds import sample_seed
from factory.types import Completion, Prompt

KEY = "sk-test-5ecret-KEY-0123456789"
SAMPLING = {"n": 2, "temperature": 0.6, "top_p": 0.95, "max_tokens": 64, "seed": 7, "ignore_eos": False}

Handler = Callable[[dict[str, Any], int], web.Response]  # (request body, call number) -> response


def ok(text: str = "The answer is 4.", **extra_msg: Any) -> web.Response:
    return web.json_response({
        "id": "x", "object": "chat.completion", "model": "smol",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, **extra_msg},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
    })


def err(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "error", "code": status}}
    return web.json_response(body, status=status, headers=headers)


class FakeServer:
    def __init__(self, handler: Handler, delay_s: float = 0.0, models: tuple[str, ...] = ("smol",)):
        self.handler, self.delay_s, self.models = handler, delay_s, models
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.times: list[float] = []
        self.active = self.max_active = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _models(self, request: web.Request) -> web.Response:
        self.auth.append(request.headers.get("Authorization"))
        if (request.headers.get("Authorization") or "Basic").split()[0] == "Bearer" \
                and request.headers["Authorization"] != f"Bearer {KEY}":
            return err(401, f"Incorrect API key provided: {request.headers['Authorization'][7:]}")
        return web.json_response({"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]})

    async def _chat(self, request: web.Request) -> web.Response:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            body = await request.json()
            self.bodies.append(body)
            self.auth.append(request.headers.get("Authorization"))
            self.times.append(time.monotonic())
            call = len(self.bodies)
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            resp = self.handler(body, call)
            if asyncio.iscoroutine(resp):
                resp = await resp
            if callable(resp):  # a streamed answer writes to the request itself
                resp = await resp(request)
            return resp
        finally:
            self.active -= 1

    async def __aenter__(self) -> "FakeServer":
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()  # type: ignore[union-attr]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def make_prompt(i: int) -> Prompt:
    return Prompt(f"p{i}", i, f"What is {i}+{i}?", str(2 * i),
                  [{"role": "user", "content": f"What is {i}+{i}?"}], "test")


def engine(url: str, model: str = "smol", sampling: dict[str, Any] | None = None, **kw: Any) -> OpenAIEngine:
    kwargs = {"base_url": url, "backoff_base_s": 0.01, "max_backoff_s": 0.05, **kw}
    return OpenAIEngine({"model": model, "engine_kwargs": kwargs}, sampling or SAMPLING)


async def run_all(eng: OpenAIEngine, n_prompts: int = 1, samples: int = 1) -> list[Completion]:
    await eng.start()
    try:
        reqs = [(make_prompt(i), s) for i in range(n_prompts) for s in range(samples)]
        return [c async for c in eng.generate(reqs)]
    finally:
        await eng.shutdown()


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


def test_registered() -> None:
    assert ENGINES.get("openai") is OpenAIEngine


def test_request_body_usage_and_reasoning() -> None:
    async def main() -> tuple[list[Completion], FakeServer, dict[str, Any], tuple[int, int]]:
        async with FakeServer(lambda b, n: ok("The answer is 4.", reasoning_content="2+2 is 4")) as srv:
            eng = engine(srv.url, extra_body={"top_k": 20})
            out = await run_all(eng, 2, 2)
            return out, srv, eng.info(), (eng.requests_done, eng.tokens_out)

    out, srv, info, counters = asyncio.run(main())
    assert counters == (4, 4 * 5)  # requests done, output tokens: what the progress bar shows
    assert len(out) == 4 and {(c.prompt_id, c.sample_index) for c in out} == {(f"p{i}", s) for i in range(2) for s in range(2)}
    for c in out:
        assert c.text == "The answer is 4." and c.reasoning_content == "2+2 is 4"
        assert c.finish_reason == "stop" and c.error is None
        assert (c.prompt_tokens, c.num_tokens) == (11, 5)
    body = next(b for b in srv.bodies if b["messages"][0]["content"] == "What is 1+1?" and b["seed"] == sample_seed(7, "p1", 1))
    assert body["model"] == "smol" and body["n"] == 1 and body["max_tokens"] == 64
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.6, 0.95, 20)
    assert "ignore_eos" not in body
    assert len({b["seed"] for b in srv.bodies}) == 4  # one seed per (prompt, sample)
    assert set(srv.auth) == {f"Bearer {KEY}"}  # the key was sent ...
    assert KEY not in json.dumps(info)  # ... and is nowhere in what the manifest records
    assert info["engine"] == "openai" and info["model"] == "smol" and info["served_models"] == ["smol"]
    assert info["base_url"] == srv.url


def test_vllm_style_reasoning_field_length_and_no_seed() -> None:
    def handler(b: dict[str, Any], n: int) -> web.Response:
        return web.json_response({"choices": [{"message": {"content": None, "reasoning": "thinking..."},
                                               "finish_reason": "length"}],
                                  "usage": {"prompt_tokens": 3, "completion_tokens": 64}})

    async def main() -> tuple[list[Completion], FakeServer]:
        async with FakeServer(handler) as srv:
            return await run_all(engine(srv.url, send_seed=False)), srv

    (c,), srv = asyncio.run(main())
    assert (c.text, c.reasoning_content, c.finish_reason, c.num_tokens) == ("", "thinking...", "length", 64)
    assert "seed" not in srv.bodies[0]


def test_retries_on_429_and_500_then_success() -> None:
    script = {1: err(429, "slow down"), 2: err(500, "oops"), 3: err(503, "busy")}

    async def main() -> tuple[list[Completion], FakeServer]:
        async with FakeServer(lambda b, n: script.get(n) or ok("fine")) as srv:
            return await run_all(engine(srv.url)), srv

    (c,), srv = asyncio.run(main())
    assert c.error is None and c.text == "fine" and len(srv.bodies) == 4


def test_retries_run_out_gives_error_row() -> None:
    async def main() -> tuple[list[Completion], FakeServer]:
        async with FakeServer(lambda b, n: err(503, "overloaded")) as srv:
            return await run_all(engine(srv.url, max_retries=2)), srv

    (c,), srv = asyncio.run(main())
    assert len(srv.bodies) == 3
    assert c.finish_reason == "error" and c.error.startswith("server_error: HTTP 503: overloaded")


def test_timeout_is_retried() -> None:
    async def handler(b: dict[str, Any], n: int) -> web.Response:
        if n == 1:
            await asyncio.sleep(1.0)
        return ok("late but fine")

    async def main() -> tuple[list[Completion], FakeServer]:
        async with FakeServer(handler) as srv:
            return await run_all(engine(srv.url, timeout_s=0.3)), srv

    (c,), srv = asyncio.run(main())
    assert c.text == "late but fine" and len(srv.bodies) == 2


def test_retry_after_is_honoured_and_bounded() -> None:
    script = {1: err(429, "wait", {"Retry-After": "0.4"}), 2: err(429, "wait long", {"Retry-After": "3600"})}

    async def main() -> tuple[list[Completion], FakeServer]:
        async with FakeServer(lambda b, n: script.get(n) or ok()) as srv:
            return await run_all(engine(srv.url, max_backoff_s=0.6)), srv

    (c,), srv = asyncio.run(main())
    assert c.error is None and len(srv.times) == 3
    first, second = srv.times[1] - srv.times[0], srv.times[2] - srv.times[1]
    assert 0.4 <= first < 0.55  # the server's Retry-After, not our 10 ms backoff
    assert 0.6 <= second < 1.5  # an hour asked, bounded by max_backoff_s


def test_parse_retry_after_http_date() -> None:
    from email.utils import formatdate

    assert _parse_retry_after("2") == 2.0
    assert 8 < _parse_retry_after(formatdate(time.time() + 10, usegmt=True)) <= 10  # type: ignore[operator]
    assert _parse_retry_after("soon") is None and _parse_retry_after(None) is None


def test_400_is_an_error_row_and_others_go_on() -> None:
    def handler(b: dict[str, Any], n: int) -> web.Response:
        q = b["messages"][0]["content"]
        if q == "What is 0+0?":
            return err(400, "This model's maximum context length is 512 tokens. However, your prompt "
                            "contains 900 input tokens. Please reduce the length of the input prompt.")
        if q == "What is 1+1?":
            return err(422, "temperature must be positive")
        return ok()

    async def main() -> list[Completion]:
        async with FakeServer(handler) as srv:
            out = await run_all(engine(srv.url), 3)
            assert len(srv.bodies) == 3  # a 400 is not retried
            return out

    by_id = {c.prompt_id: c for c in asyncio.run(main())}
    assert by_id["p0"].finish_reason == "error" and by_id["p0"].error.startswith("prompt_too_long: HTTP 400: ")
    assert by_id["p1"].finish_reason == "error" and by_id["p1"].error == "bad_request: HTTP 422: temperature must be positive"
    assert by_id["p2"].error is None and by_id["p2"].text == "The answer is 4."


def test_context_error_with_numbers_retries_with_what_fits() -> None:
    def handler(b: dict[str, Any], n: int) -> web.Response:
        if b["max_tokens"] > 12:  # the older vLLM wording, which states both numbers
            return err(400, "This model's maximum context length is 512 tokens. However, you requested "
                            "564 tokens (500 in the messages, 64 in the completion).")
        return ok()

    async def main() -> tuple[list[Completion], FakeServer]:
        async with FakeServer(handler) as srv:
            return await run_all(engine(srv.url)), srv

    (c,), srv = asyncio.run(main())
    assert c.error is None and [b["max_tokens"] for b in srv.bodies] == [64, 12]


def test_401_is_fatal_names_the_variable_not_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with FakeServer(lambda b, n: err(401, f"Incorrect API key provided: {KEY}")) as srv:
            eng = engine(srv.url)
            await eng.start()
            try:
                with pytest.raises(OpenAIEngineError) as e:
                    [c async for c in eng.generate([(make_prompt(i), 0) for i in range(5)])]
            finally:
                await eng.shutdown()
            assert len(srv.bodies) <= 5  # not retried
            msg = str(e.value)
            assert "OPENAI_API_KEY" in msg and "401" in msg and "refused" in msg
            assert KEY not in msg and "Incorrect API key provided: ***" in msg

    asyncio.run(main())


def test_404_is_fatal() -> None:
    async def main() -> None:
        async with FakeServer(lambda b, n: err(404, "The model `smol` does not exist.")) as srv:
            eng = engine(srv.url)
            await eng.start()
            try:
                with pytest.raises(OpenAIEngineError, match=r"HTTP 404 \(check base_url and teacher.model"):
                    [c async for c in eng.generate([(make_prompt(0), 0)])]
            finally:
                await eng.shutdown()

    asyncio.run(main())


def test_401_without_a_key_says_the_variable_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACTORY_TEST_UNSET_KEY", raising=False)

    async def main() -> FakeServer:
        async with FakeServer(lambda b, n: err(401, "authentication required")) as srv:
            eng = engine(srv.url, api_key_env="FACTORY_TEST_UNSET_KEY")
            await eng.start()
            try:
                with pytest.raises(OpenAIEngineError, match=r"\$FACTORY_TEST_UNSET_KEY is not set"):
                    [c async for c in eng.generate([(make_prompt(0), 0)])]
            finally:
                await eng.shutdown()
            return srv

    assert asyncio.run(main()).auth == [None, None]  # no Authorization header without a key


def test_start_with_a_wrong_key(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with FakeServer(lambda b, n: ok()) as srv:
            monkeypatch.setenv("MY_KEY", "sk-wrong-key-999")
            eng = engine(srv.url, api_key_env="MY_KEY")
            with pytest.raises(OpenAIEngineError) as e:
                await eng.start()
            msg = str(e.value)
            assert "$MY_KEY" in msg and "HTTP 401" in msg
            assert "sk-wrong-key-999" not in msg and "Incorrect API key provided: ***" in msg

    asyncio.run(main())


def test_start_lists_served_models_when_model_is_missing() -> None:
    async def main() -> None:
        async with FakeServer(lambda b, n: ok(), models=("qwen", "smol")) as srv:
            with pytest.raises(OpenAIEngineError, match=r"'deepseek-r1' is not served .* it serves: qwen, smol"):
                await engine(srv.url, model="deepseek-r1").start()

    asyncio.run(main())


def test_start_fails_clearly_when_server_is_unreachable() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main() -> None:
        eng = engine(f"http://127.0.0.1:{port}/v1", max_retries=2)
        with pytest.raises(OpenAIEngineError, match=rf"http://127.0.0.1:{port}/v1 is unreachable"):
            await eng.start()

    asyncio.run(main())


def test_concurrency_never_exceeds_the_limit() -> None:
    async def main() -> tuple[list[Completion], FakeServer]:
        async with FakeServer(lambda b, n: ok(), delay_s=0.05) as srv:
            eng = engine(srv.url, max_concurrency=3)
            await eng.start()
            try:
                # Two generate calls at once, as the Ray actor runs several shards concurrently:
                # the limit is per engine, not per call.
                async def one(lo: int) -> list[Completion]:
                    return [c async for c in eng.generate([(make_prompt(i), 0) for i in range(lo, lo + 10)])]

                a, b = await asyncio.gather(one(0), one(10))
            finally:
                await eng.shutdown()
            return a + b, srv

    out, srv = asyncio.run(main())
    assert len(out) == 20 and all(c.error is None for c in out)
    assert srv.max_active == 3  # reached, never exceeded


def test_key_never_logged_or_returned(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, aiohttp's included

    def handler(b: dict[str, Any], n: int) -> web.Response:
        q = b["messages"][0]["content"]
        if q == "What is 0+0?" and n <= 2:
            return err(500, f"internal error for key {KEY}")
        if q == "What is 1+1?":
            return err(400, f"bad request from Bearer {KEY}")
        return ok()

    async def main() -> tuple[list[Completion], dict[str, Any]]:
        async with FakeServer(handler) as srv:
            eng = engine(srv.url)
            out = await run_all(eng, 3)
            return out, eng.info()

    out, info = asyncio.run(main())
    by_id = {c.prompt_id: c for c in out}
    assert by_id["p0"].error is None and by_id["p2"].error is None
    assert by_id["p1"].error.startswith("bad_request: HTTP 400: bad request from Bearer ***")
    assert "retry 1/" in caplog.text  # the retries were logged ...
    assert KEY not in caplog.text  # ... without the key the server echoed
    assert all(KEY not in r.getMessage() for r in caplog.records)
    assert all(KEY not in (c.error or "") for c in out) and KEY not in json.dumps(info)


def test_credentials_in_base_url_become_basic_auth_and_stay_private(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")

    async def main() -> tuple[dict[str, Any], FakeServer]:
        async with FakeServer(lambda b, n: ok()) as srv:
            eng = engine(f"http://user:pa55word@127.0.0.1:{srv.port}/v1")
            await run_all(eng)
            return eng.info(), srv

    info, srv = asyncio.run(main())
    assert info["base_url"] == srv.url and "pa55word" not in json.dumps(info)
    import base64

    assert set(srv.auth) == {"Basic " + base64.b64encode(b"user:pa55word").decode()}
    assert public_url("https://u:p@host:8443/v1?key=abc") == "https://host:8443/v1"


def test_bad_engine_kwargs_fail_early() -> None:
    with pytest.raises(OpenAIEngineError, match="engine_kwargs.base_url"):
        OpenAIEngine({"model": "m", "engine_kwargs": {}}, SAMPLING)
    with pytest.raises(OpenAIEngineError, match="engine_kwargs.max_concurency"):
        OpenAIEngine({"model": "m", "engine_kwargs": {"base_url": "http://h/v1", "max_concurency": 2}}, SAMPLING)
    with pytest.raises(OpenAIEngineError, match="extra_body may not set"):
        OpenAIEngine({"model": "m", "engine_kwargs": {"base_url": "http://h/v1", "extra_body": {"n": 4}}}, SAMPLING)
    with pytest.raises(OpenAIEngineError, match="query string"):
        OpenAIEngine({"model": "m", "engine_kwargs": {"base_url": "http://h/v1?api_key=x"}}, SAMPLING)


# --------------------------------------------------------------------------------------------
# streaming with early abort (sampling.early_abort)

LOOP = "so 2 + 2 = 4 and "


def sse(pieces: list[str], finish: str = "stop", delay_s: float = 0.0, sent: list[int] | None = None,
        usage: bool = True) -> Callable[[web.Request], Any]:
    """A streamed chat answer, one SSE chunk per piece (as vLLM sends one per token)."""
    async def write(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for i, piece in enumerate(pieces):
                chunk = {"choices": [{"index": 0, "delta": {"content": piece},
                                      "finish_reason": finish if i == len(pieces) - 1 else None}]}
                await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
                if sent is not None:
                    sent.append(i)
                if delay_s:
                    await asyncio.sleep(delay_s)
            if usage:
                tail = {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": len(pieces)}}
                await resp.write(f"data: {json.dumps(tail)}\n\n".encode())
            await resp.write(b"data: [DONE]\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the client closed the stream: what an abort looks like from the server
        return resp
    return write


ABORT_SAMPLING = {**SAMPLING, "max_tokens": 4000, "early_abort": {"every_tokens": 16}}


def test_streamed_answer_without_a_loop_is_whole() -> None:
    pieces = [f"step {i} adds {i}. " for i in range(100)] + ["\\boxed{4}"]

    async def main() -> tuple[list[Completion], FakeServer]:
        async with FakeServer(lambda b, n: sse(pieces)) as srv:
            return await run_all(engine(srv.url, sampling=ABORT_SAMPLING)), srv

    (c,), srv = asyncio.run(main())
    assert srv.bodies[0]["stream"] is True and srv.bodies[0]["stream_options"] == {"include_usage": True}
    assert c.text == "".join(pieces) and c.finish_reason == "stop" and c.aborted_by is None
    assert (c.prompt_tokens, c.num_tokens) == (9, len(pieces))


def test_streamed_loop_is_aborted_and_the_connection_closed() -> None:
    sent: list[int] = []
    pieces = ["Let me check. "] + [LOOP] * 2000

    async def main() -> tuple[list[Completion], FakeServer, tuple[int, int]]:
        async with FakeServer(lambda b, n: sse(pieces, finish="length", delay_s=0.001, sent=sent)) as srv:
            eng = engine(srv.url, sampling=ABORT_SAMPLING)
            out = await run_all(eng)
            await asyncio.sleep(0.2)  # let the server notice the closed connection
            return out, srv, (eng.requests_done, eng.tokens_out)

    (c,), srv, counters = asyncio.run(main())
    assert c.finish_reason == "abort" and c.aborted_by == "repetition" and c.error is None
    assert 16 <= c.num_tokens < 200 and c.num_tokens % 16 == 0
    assert c.text == "".join(pieces[: c.num_tokens])  # the partial text, exactly what was watched
    assert counters == (1, c.num_tokens)
    assert len(sent) < 1000  # the server stopped writing: the stream was closed, not read to its end
    assert len(srv.bodies) == 1  # an abort is an answer, never retried


def test_error_inside_the_stream_is_an_error_row() -> None:
    async def broken(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"error": {"message": "engine hiccup", "code": 500}}\n\n')
        return resp

    async def main() -> list[Completion]:
        async with FakeServer(lambda b, n: broken) as srv:
            return await run_all(engine(srv.url, sampling=ABORT_SAMPLING))

    (c,) = asyncio.run(main())
    assert c.finish_reason == "error" and c.error.startswith("server_error: error in the stream: engine hiccup")
