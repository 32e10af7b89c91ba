"""Build or load the T5 student and its tokenizer (Hub id, local checkpoint, or a random model of a
given architecture for offline runs)."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch

from ..core.errors import PipelineError
from ..core.paths import resolve_data_path
from ..core.spec_tables import StudentSpec
from .config import t5_config_fields


def _local_or_hub(name: str) -> str:
    p = resolve_data_path(name)
    return str(p) if p.exists() else name


def load_tokenizer(spec: StudentSpec):
    from transformers import AutoTokenizer

    name = _local_or_hub(spec.tokenizer or spec.id)
    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as e:
        raise PipelineError(f"cannot load tokenizer {name!r}: {_first_line(e)}") from None


def build_model(spec: StudentSpec, init_dir: str | Path | None = None, seed: int = 0):
    """A T5ForConditionalGeneration: from ``init_dir`` (a stage-1 checkpoint) if given, else
    pretrained from ``spec.id``, else (``from_config``) randomly initialised (from ``seed``) from the
    config at ``spec.id`` with ``config_overrides``, tied like the t5-v1_1 checkpoints (encoder and
    decoder share the input embeddings; ``lm_head`` is separate), or, with the override
    ``tie_word_embeddings: true``, like the original T5 (``lm_head`` is ``shared``)."""
    from transformers import T5Config, T5ForConditionalGeneration

    if init_dir is not None:
        return load_checkpoint(str(init_dir))
    name = _local_or_hub(spec.id)
    if not spec.from_config:
        return load_checkpoint(name)
    try:
        config = T5Config.from_pretrained(name)
    except Exception as e:
        raise PipelineError(f"cannot load student {name!r}: {_first_line(e)}") from None
    raw_tie = _raw_tie(name)
    for k, v in spec.config_overrides.items():
        if k not in t5_config_fields():
            raise PipelineError(f"students: config_overrides.{k} of {spec.id!r}: not a T5Config attribute")
        setattr(config, k, v)
    if "num_layers" in spec.config_overrides and "num_decoder_layers" not in spec.config_overrides:
        config.num_decoder_layers = config.num_layers
    config.tie_word_embeddings = bool(spec.config_overrides.get("tie_word_embeddings", raw_tie))
    if config.tie_word_embeddings:  # as the original T5: lm_head is `shared`, the decoder output scaled
        config.scale_decoder_outputs = True
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(config)
    tie_input_embeddings(model)
    return model


def _first_line(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def load_checkpoint(name: str):
    """``T5ForConditionalGeneration.from_pretrained`` (Hub id or local directory), refusing weights
    that do not match the config: transformers would re-initialise a missing layer and only warn.

    The only keys a T5 checkpoint may leave out are the tied ones: the encoder/decoder input
    embeddings (always ``shared``), and ``lm_head`` only for an original-T5 checkpoint (which
    scales its decoder output and ties ``lm_head`` to ``shared``). A t5-v1_1 / flan-t5 checkpoint
    without its own ``lm_head`` would silently become a different model, so it is an error."""
    import re

    from transformers import T5ForConditionalGeneration

    try:
        with _input_ties_only(T5ForConditionalGeneration, untied=not _raw_tie(name)):
            model, info = T5ForConditionalGeneration.from_pretrained(name, output_loading_info=True)
    except Exception as e:
        raise PipelineError(f"cannot load student {name!r}: {_first_line(e)}") from None
    tied = {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"}
    missing = set(info.get("missing_keys", ()))
    if getattr(model.config, "scale_decoder_outputs", True):
        tied.add("lm_head.weight")
    elif model.lm_head.weight.data_ptr() == model.shared.weight.data_ptr():
        missing.add("lm_head.weight")  # transformers ties a missing lm_head to `shared` and says nothing
    missing = sorted(missing - tied)
    ignore = [re.compile(p) for p in (T5ForConditionalGeneration._keys_to_ignore_on_load_unexpected or [])]
    unexpected = sorted(k for k in info.get("unexpected_keys", ()) if not any(r.search(k) for r in ignore))
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys", ()))
    for what, keys in (("missing from", missing), ("in the weights but not in the config of", unexpected),
                       ("of the wrong shape in", mismatched)):
        if keys:
            more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
            raise PipelineError(f"{name}: weights do not match the config: {len(keys)} parameter(s) {what} the "
                                f"checkpoint, e.g. {', '.join(keys[:3])}{more}; refusing to re-initialise them")
    return model


@contextmanager
def _input_ties_only(cls, untied: bool):
    """While an untied checkpoint (t5-v1_1, flan-t5, ours: ``tie_word_embeddings: false`` in its
    config.json) loads, the class's tie mapping holds only the input embeddings.

    transformers' T5Config forces ``tie_word_embeddings=True`` (the saved False survives only as
    ``scale_decoder_outputs``), so the class mapping would also ask to tie ``lm_head`` to ``shared``,
    find both saved with different values, warn ("You should update the config with
    `tie_word_embeddings=False`", which the config already says) and not tie them. The weights
    loaded are the same either way; this makes the load say nothing."""
    if not untied:
        yield
        return
    saved = cls.__dict__.get("_tied_weights_keys")
    cls._tied_weights_keys = {k: v for k, v in (saved or {}).items() if k != "lm_head.weight"}
    try:
        yield
    finally:
        cls._tied_weights_keys = saved


def _raw_tie(name: str) -> bool:
    """``tie_word_embeddings`` as the checkpoint's own config.json says (local folder or Hub id),
    before T5Config overrides it."""
    from transformers import T5Config

    raw, _ = T5Config.get_config_dict(name)
    return bool(raw.get("tie_word_embeddings", True))


def tie_input_embeddings(model) -> None:
    """Encoder and decoder input embeddings are ``model.shared`` in every T5 checkpoint."""
    model.encoder.embed_tokens = model.shared
    model.decoder.embed_tokens = model.shared


def n_params(model) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
