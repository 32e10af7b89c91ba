"""Split manifests: a source's rows pooled and re-split by example id (e.g. the DSS SVAMP split)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

from ..core.errors import PipelineError
from ..core.paths import resolve_data_path
from ..core.spec import SPLITS


@dataclass(frozen=True)
class Loaded:
    """A source's examples by canonical split; with a split manifest, also the rows per split as
    loaded (before it) and how many rows it dropped."""

    splits: dict[str, list[dict]]
    loaded_rows: Optional[dict[str, int]] = None
    manifest_dropped: int = 0


def read_manifest(manifest: str) -> dict[str, list[str]]:
    """The ``splits`` of a split manifest (canonical split -> example ids), checked: one line
    naming the file (as written in params) for a missing or corrupt file, or an id listed twice."""
    path = resolve_data_path(manifest)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"{manifest}: split manifest not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PipelineError(f"{manifest}: cannot read split manifest ({type(e).__name__})") from None
    except json.JSONDecodeError as e:
        raise PipelineError(f"{manifest}:{e.lineno}: corrupt split manifest ({e.msg})") from None
    splits = doc.get("splits") if isinstance(doc, dict) else None
    if not isinstance(splits, dict) or not splits:
        raise PipelineError(f"{manifest}: not a split manifest (expected {{\"splits\": {{split: [ids]}}}})")
    seen: dict[str, str] = {}
    for split, ids in splits.items():
        if split not in SPLITS:
            raise PipelineError(f"{manifest}: unknown split {split!r} (expected {', '.join(SPLITS)})")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise PipelineError(f"{manifest}: splits.{split}: expected a list of id strings")
        for i in ids:
            if i in seen:
                where = f"listed twice in {split}" if seen[i] == split else f"in both {seen[i]} and {split}"
                raise PipelineError(f"{manifest}: ID {i!r} is {where}")
            seen[i] = split
    return splits


def apply_manifest(raw: dict[str, list[dict]], manifest: str) -> Loaded:
    """Pool the rows of every loaded split and re-split them by example ``id`` as ``manifest``
    says, each split in the manifest's order. Rows whose id is in no split are dropped and counted;
    an id of the manifest that no row has, or that several rows have, is an error."""
    splits = read_manifest(manifest)
    wanted = {i for ids in splits.values() for i in ids}
    by_id: dict[str, dict] = {}
    dropped = 0
    for rows in raw.values():
        for r in rows:
            if r["id"] not in wanted:
                dropped += 1
            elif r["id"] in by_id:
                raise PipelineError(f"{manifest}: ID {r['id']!r} matches several rows of the dataset")
            else:
                by_id[r["id"]] = r
    for split, ids in splits.items():
        for i in ids:
            if i not in by_id:
                raise PipelineError(f"{manifest}: ID {i!r} ({split}) is not in the dataset "
                                    f"(loaded splits: {', '.join(raw)}; {sum(map(len, raw.values()))} rows)")
    return Loaded({split: [by_id[i] for i in ids] for split, ids in splits.items()},
                  {split: len(rows) for split, rows in raw.items()}, dropped)
