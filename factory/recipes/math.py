"""Recipe: verified math reasoning traces (the OpenR1-Math-220k recipe).

Usage:

    factory generate configs/math_r1.yaml                      # a DeepSeek-R1 distill on every GPU
    factory generate configs/default.yaml                      # the embedded CPU demo (SmolLM2-135M)
    factory generate configs/math_r1.yaml --set source.limit=1000 --set sampling.n=8

From Python:

    from factory.api import generate
    from factory.recipes.math import build
    result = generate(build("configs/math_r1.yaml", ["source.limit=100"]))  # publishes if the config says so

Steps: problems with a final answer (`source.columns.reference`), deduplicated and
decontaminated against MATH-500/AIME (prefilter), the teacher writes `sampling.n` traces per
problem, and a trace is kept when it was not truncated, its <think> block is well formed (for
teachers that emit one), and math-verify proves the last \\boxed{} answer equal to the reference.
`sampling.stop_after_accepted: 1` samples in rounds and stops a problem at its first verified
trace, which spends far fewer tokens per accepted trace when many problems are easy.
"""

from __future__ import annotations

from pathlib import Path

from factory.config import Config, load_config

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "math_r1.yaml"


def build(cfg: Config | str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """A validated math config: a Config as is, or a YAML path (default configs/math_r1.yaml) + overrides."""
    if isinstance(cfg, Config):
        return cfg
    return load_config(cfg or DEFAULT_CONFIG, overrides or [])
