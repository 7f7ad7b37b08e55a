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
