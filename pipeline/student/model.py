"""Build or load the T5 student and its tokenizer (Hub id, local checkpoint, or a random model of a
given architecture for offline runs)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import PipelineError
from ..paths import resolve_data_path
from ..spec import TrainSpec


def _local_or_hub(name: str) -> str:
    p = resolve_data_path(name)
    return str(p) if p.exists() else name


def load_tokenizer(spec: TrainSpec):
    from transformers import AutoTokenizer

    name = _local_or_hub(spec.tokenizer or spec.student)
    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as e:
        raise PipelineError(f"cannot load tokenizer {name!r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def build_model(spec: TrainSpec, init_dir: str | Path | None = None):
    """A T5ForConditionalGeneration: from ``init_dir`` (a stage-1 checkpoint) if given, else
    pretrained from ``spec.student``, else (``from_config``) randomly initialised from the config
    at ``spec.student`` with ``config_overrides``, tied like the t5-v1_1 checkpoints (encoder and
    decoder share the input embeddings; ``lm_head`` is separate)."""
    from transformers import T5Config, T5ForConditionalGeneration

    if init_dir is not None:
        return T5ForConditionalGeneration.from_pretrained(str(init_dir))
    name = _local_or_hub(spec.student)
    try:
        if not spec.from_config:
            return T5ForConditionalGeneration.from_pretrained(name)
        config = T5Config.from_pretrained(name)
    except Exception as e:
        raise PipelineError(f"cannot load student {name!r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    raw_tie = _raw_tie(name)
    for k, v in spec.config_overrides.items():
        if not hasattr(config, k):
            raise PipelineError(f"train.config_overrides.{k}: not a T5Config attribute")
        setattr(config, k, v)
    if "num_layers" in spec.config_overrides and "num_decoder_layers" not in spec.config_overrides:
        config.num_decoder_layers = config.num_layers
    config.tie_word_embeddings = raw_tie
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(config)
    tie_input_embeddings(model)
    return model


def _raw_tie(name: str) -> bool:
    import json

    p = Path(name) / "config.json"
    if p.exists():
        return bool(json.loads(p.read_text()).get("tie_word_embeddings", True))
    return True


def tie_input_embeddings(model) -> None:
    """Encoder and decoder input embeddings are ``model.shared`` in every T5 checkpoint."""
    model.encoder.embed_tokens = model.shared
    model.decoder.embed_tokens = model.shared


def n_params(model) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
