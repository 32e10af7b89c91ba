"""Hub sources: ``datasets.load_dataset`` by id (or a local folder in the Hub's layout)."""
from __future__ import annotations

from ..core.errors import PipelineError
from ..core.paths import resolve_data_path
from ..core.spec import HubSource


def hub_path(dataset_id: str) -> str:
    """A relative ``id`` that names an existing local folder (e.g. ``local_hub/ChilleD/SVAMP``) ->
    that folder, resolved like every data path; a Hub id passes through unchanged."""
    p = resolve_data_path(dataset_id)
    return str(p) if p.is_dir() else dataset_id


def load_hub(source: HubSource) -> dict[str, list[dict]]:
    import datasets

    name = hub_path(source.id)
    out = {}
    for split, hub_split in source.splits.items():
        try:
            ds = datasets.load_dataset(name, source.config, split=hub_split)
        except Exception as e:  # offline, unknown id, unknown split...
            raise PipelineError(f"cannot load Hub dataset {source.id!r} split {hub_split!r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        out[split] = list(ds)
    return out
