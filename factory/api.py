"""What a user does, as Python calls: generate, verify, publish. The CLI's commands and the
recipes call these; so can a notebook or another program.

    from factory.api import generate
    result = generate("configs/default.yaml", ["sampling.n=2"])   # publishes if the config says so
    result.version_dir, result.published

Each function takes a Config or a YAML path (+ `--set`-style overrides) and returns a result
object; errors a user can fix are UserError subclasses whose message says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from factory.config import Config, load_config
from factory.hub import PublishResult, publish_version
from factory.reverify import VerifyResult, open_input, resolve_config, reverify
from factory.runner.driver import GenerateResult
from factory.runner.driver import generate as run_generate

__all__ = ["GenerateOutcome", "generate", "publish", "verify"]


@dataclass
class GenerateOutcome(GenerateResult):
    """The new version (see GenerateResult) and, when the config has a `publish` section, what
    publishing it did."""

    published: PublishResult | None = None


def _config(cfg: Config | str | Path, overrides: list[str] | None) -> Config:
    if isinstance(cfg, Config):
        if overrides:
            return load_config(None, overrides, origin="(config object)", data=cfg.model_dump(mode="json"))
        return cfg
    return load_config(cfg, overrides or [])


def generate(cfg: Config | str | Path, overrides: list[str] | None = None, *, resume_id: str | None = None,
             new_run: bool = False, publish: bool | None = None) -> GenerateOutcome:
    """Run a config end to end: prompts -> teacher -> verifiers -> a new local version; then push it
    to the Hub when the config has a `publish` section (`publish=False` skips that, `True` requires
    the section). `resume_id` resumes that run, `new_run` never resumes. When an incremental run
    finds nothing new, `new_version` is False and nothing is published."""
    cfg = _config(cfg, overrides)
    if publish and cfg.publish is None:
        raise ValueError("publish=True needs a `publish:` section (repo) in the config")
    result = run_generate(cfg, resume_id=resume_id, new_run=new_run)
    outcome = GenerateOutcome(result.version_dir, result.manifest, result.run_dir, result.resumed,
                              result.new_version)
    if cfg.publish is not None and publish is not False and result.new_version:
        outcome.published = publish_version(result.version_dir, cfg.publish.repo, private=cfg.publish.private)
    return outcome


def publish(version_dir: str | Path, repo: str, *, private: bool = False) -> PublishResult:
    """Push one local version to the Hub as one commit on `main` plus the tag `vN`."""
    return publish_version(version_dir, repo, private=private)


def verify(input_path: str | Path, *, config: str | Path | None = None, verifiers: list[str] | None = None,
           overrides: list[str] | None = None, extraction: str | None = None, out: str | Path | None = None,
           workers: int | None = None, batch_rows: int = 1000, progress: bool | None = None,
           overwrite: bool = False) -> VerifyResult:
    """Re-verify existing traces (a version dir, or a JSONL / JSON / Parquet file) into one Parquet
    file; see factory/reverify/__init__.py for the columns and the choice of verifiers."""
    inp = open_input(input_path, batch_rows)
    cfg = resolve_config(inp, config, verifiers, overrides, extraction)
    return reverify(inp, cfg, out, workers=workers, batch_rows=batch_rows, progress=progress,
                    overwrite=overwrite, extraction=extraction)
