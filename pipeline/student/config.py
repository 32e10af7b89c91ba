"""The settings a student's ``config_overrides`` may name: the fields of the installed ``T5Config``
(and its aliases, ``hidden_size`` for ``d_model``). The ``spec`` stage checks the overrides against
them, so that a typo (``num_layer``) fails before anything trains. Importing transformers takes
seconds, so only that stage (and ``plan``) reads them; ``build_model`` checks again as it builds."""
from __future__ import annotations

from functools import lru_cache

_NOT_SETTINGS = {"_name_or_path", "transformers_version", "model_type", "architectures"}


@lru_cache(maxsize=1)
def t5_config_fields() -> frozenset[str]:
    from transformers import T5Config

    return frozenset(set(T5Config().to_dict()) - _NOT_SETTINGS) | frozenset(T5Config.attribute_map)
