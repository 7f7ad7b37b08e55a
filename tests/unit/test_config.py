"""Config: YAML + --set overrides, validated before any engine starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_configs_validate() -> None:
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        cfg = load_config(path)
        assert cfg.sampling.n >= 1, path


def test_overrides_are_typed_yaml_values() -> None:
    cfg = load_config(ROOT / "configs/default.yaml",
                      ["sampling.n=8", "sampling.temperature=0.7", "source.limit=3", "run.progress=false"])
    assert cfg.sampling.n == 8 and cfg.sampling.temperature == 0.7
    assert cfg.source.limit == 3 and cfg.run.progress is False


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["sampling.nn=3"], "sampling.nn: unknown key"),  # a typo is an error, not ignored
        (["sampling.n=0"], "sampling.n"),  # impossible value
        (["sampling.n=many"], "sampling.n"),  # wrong type
        (["sampling.max_tokens=5000"], "must be below teacher.max_model_len"),  # cross-field check
        (["verifiers=[{name: nope}]"], "unknown verifier 'nope'"),
        (["verifiers=[{name: math, timeout: 3}]"], "timeout"),  # verifier params are checked too
        (["teacher.engine=nope"], "unknown engine 'nope'"),
        (["source.path=x.jsonl"], "exactly one of source.builtin"),
        (["prompt.template=no placeholder"], "must contain {problem}"),
        (["output.name=a/b"], "plain folder name"),
        (["sampling"], "expected KEY=VALUE"),
    ],
)
def test_bad_configs_fail_with_the_fix(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "configs/default.yaml", overrides)
    assert message in str(e.value)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config("nope.yaml")


def test_fingerprint_ignores_where_output_goes() -> None:
    a = load_config(ROOT / "configs/default.yaml")
    b = load_config(ROOT / "configs/default.yaml", ["output.store=/elsewhere", "run.progress=false"])
    c = load_config(ROOT / "configs/default.yaml", ["sampling.seed=1"])
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_config_asks_each_verifier_and_engine_to_check_itself() -> None:
    """A verifier or engine added in one file brings its own checks; config names neither."""
    from pydantic import BaseModel, ConfigDict

    from factory.engines.base import ENGINES
    from factory.engines.scripted import ScriptedEngine
    from factory.verifiers.base import VERIFIERS, Verifier

    class P(BaseModel):
        model_config = ConfigDict(extra="forbid")
        extraction: str = "last_number"
        needs: str = "truncation"

    class Picky(Verifier):
        Params = P

        @classmethod
        def check_config(cls, params, earlier):
            checked = P.model_validate(params)
            if checked.needs not in earlier:
                raise ValueError(f"picky needs {checked.needs!r} before it")
            return checked

        def verify(self, trace):  # pragma: no cover - never run here
            return self.verdict(True)

    class Strict(ScriptedEngine):
        @classmethod
        def check_config(cls, engine_kwargs):
            if engine_kwargs.get("speed") != "fast":
                raise ValueError("strict engine: set engine_kwargs.speed: fast")

    VERIFIERS.register("picky_test")(Picky)
    ENGINES.register("strict_test")(Strict)
    try:
        base = ["source.builtin=arithmetic", "verifiers=[{name: truncation}, {name: picky_test}]"]
        cfg = load_config(None, base, data={})
        assert cfg.answer_extraction() == "last_number"  # the verifier's own default, not config's
        with pytest.raises(ConfigError, match="picky needs 'truncation' before it"):
            load_config(None, ["source.builtin=arithmetic", "verifiers=[{name: picky_test}, {name: truncation}]"],
                        data={})
        with pytest.raises(ConfigError, match="typo: unknown key"):
            load_config(None, [*base[:1], "verifiers=[{name: truncation}, {name: picky_test, typo: 1}]"], data={})
        with pytest.raises(ConfigError, match="set engine_kwargs.speed: fast"):
            load_config(None, [*base, "teacher.engine=strict_test"], data={})
        assert load_config(None, [*base, "teacher.engine=strict_test", "teacher.engine_kwargs={speed: fast}"],
                           data={}).teacher.engine == "strict_test"
    finally:
        VERIFIERS._classes.pop("picky_test", None)
        ENGINES._classes.pop("strict_test", None)
