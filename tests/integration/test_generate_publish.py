"""`factory generate` with a `publish:` section pushes the new version to the Hub when it finishes.

The real huggingface_hub client talks HTTP to tests/support/hubserver/ on loopback (HF_ENDPOINT); the
run uses the scripted engine (this test is about the publish step, not the teacher).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.hubserver import LocalHub

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hf_" + secrets.token_hex(17)


def test_generate_publishes_when_configured(tmp_path: Path) -> None:
    cfg = {
        "source": {"builtin": "arithmetic", "limit": 6},
        "teacher": {"engine": "scripted", "engine_kwargs": {"default": "It is \\boxed{9}"}},
        "sampling": {"n": 2, "max_tokens": 32},
        "run": {"progress": False},
        "output": {"store": str(tmp_path / "store"), "name": "pub"},
        "publish": {"repo": "org/pub"},
    }
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(cfg))
    with LocalHub(token=TOKEN) as hub:
        env = dict(os.environ, **hub.env(str(tmp_path / "hf"), token=TOKEN), RAY_AUTH_MODE="disabled")
        env.pop("HF_HUB_OFFLINE", None)
        env.pop("HF_DATASETS_OFFLINE", None)
        proc = subprocess.run([sys.executable, "-m", "factory.cli", "-v", "generate", str(config)], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-4000:]
        repo = hub.repo("org/pub")
        assert list(repo.tags) == ["v1"]
        commit = repo.resolve("v1")
        assert commit is not None and repo.resolve("main") is commit
    manifest = json.loads((tmp_path / "store" / "pub" / "v1" / "manifest.json").read_text())
    assert manifest["counts"]["generations"] == 12
    # The token is in no output and no file the run wrote.
    assert TOKEN not in proc.stdout + proc.stderr
    for p in tmp_path.rglob("*"):
        if p.is_file():
            assert TOKEN.encode() not in p.read_bytes(), p


def test_generate_from_python_publishes_when_configured(tmp_path: Path) -> None:
    """`factory.api.generate`, as a recipe or a notebook calls it, publishes like the CLI does."""
    cfg = {
        "source": {"builtin": "arithmetic", "limit": 3},
        "teacher": {"engine": "scripted", "engine_kwargs": {"default": "It is \\boxed{9}"}},
        "sampling": {"n": 1, "max_tokens": 32},
        "run": {"progress": False, "backend": "local"},
        "output": {"store": str(tmp_path / "store"), "name": "api"},
        "publish": {"repo": "org/api"},
    }
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(cfg))
    code = ("import sys; from factory.api import generate; r = generate(sys.argv[1]); "
            "print(r.version_dir.name, r.published.tag, r.published.repo_id)")
    with LocalHub(token=TOKEN) as hub:
        env = dict(os.environ, **hub.env(str(tmp_path / "hf"), token=TOKEN))
        env.pop("HF_HUB_OFFLINE", None)
        env.pop("HF_DATASETS_OFFLINE", None)
        proc = subprocess.run([sys.executable, "-c", code, str(config)], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert proc.stdout.split() == ["v1", "v1", "org/api"]
        assert list(hub.repo("org/api").tags) == ["v1"]
