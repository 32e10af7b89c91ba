"""Derive ``manifests/svamp_dss.json``: the Distilling step-by-step SVAMP split (800 train / 200 test)
as lists of SVAMP's own problem IDs (``chal-1`` ... ``chal-1000``).

Mind's Mirror, like Distilling step-by-step (DSS), trains on 800 and tests on 200 of the 1,000 SVAMP
problems. The DSS release ships that split as text (``svamp_{train,test}.json``, ``{input, label}``)
without IDs; ``SVAMP.json`` has the IDs, which are also the ``ID`` column of the ``ChilleD/SVAMP``
Hub dataset. A DSS row is matched to the SVAMP problem whose ``Body + " " + Question`` is equal to
its ``input`` once both are lower-cased and their whitespace collapsed.

Duplicates are handled explicitly: a test row must match exactly one ID (else the script fails);
a train row matching several IDs takes the first, in ``SVAMP.json`` order, that no test row and no
earlier train row took, and is listed under ``provenance.ambiguous``. On the real files every row
matches exactly one ID, so that list is empty.

Each split's IDs are in the DSS file's row order, so row i of a split is row i of the DSS file and
of its PaLM CoT files. The output is deterministic; the date is kept when nothing else changed.

    python scripts/make_split_manifest.py [--shared ../shared] [--out manifests/svamp_dss.json]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import sys
from pathlib import Path

from pipeline.tasks.base import normalize_text as normalize  # the pipeline's own matching rule

ROOT = Path(__file__).resolve().parents[1]
DSS_FILES = {"train": "data/svamp/svamp_train.json", "test": "data/svamp/svamp_test.json"}
SVAMP_FILE = "data/svamp/SVAMP.json"
RULE = ('DSS `input` == SVAMP.json `Body + " " + Question`, both lower-cased with whitespace '
        "collapsed; IDs listed in the DSS file's row order")


class ManifestError(Exception):
    """The shared files do not determine the split unambiguously."""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def index_svamp(problems: list[dict]) -> dict[str, list[str]]:
    """Normalised ``Body + " " + Question`` -> the IDs carrying it, in ``SVAMP.json`` order."""
    index: dict[str, list[str]] = {}
    for p in problems:
        index.setdefault(normalize(f"{p['Body']} {p['Question']}"), []).append(str(p["ID"]))
    return index


def match_split(texts: list[str], index: dict[str, list[str]], taken: set[str], split: str,
                strict: bool) -> tuple[list[str], list[dict]]:
    """IDs for the DSS rows ``texts`` -> (IDs in row order, the ambiguous rows and how they were resolved).

    ``strict``: a row with several candidate IDs is an error (the test split). Otherwise the first
    candidate not in ``taken`` is chosen. Chosen IDs are added to ``taken``."""
    ids, ambiguous = [], []
    for row, text in enumerate(texts):
        candidates = index.get(normalize(text), [])
        if not candidates:
            raise ManifestError(f"{split} row {row}: no SVAMP problem has this text: {text[:80]!r}")
        if len(candidates) > 1 and strict:
            raise ManifestError(f"{split} row {row}: ambiguous, matches {', '.join(candidates)}")
        free = [c for c in candidates if c not in taken]
        if not free:
            raise ManifestError(f"{split} row {row}: every matching ID ({', '.join(candidates)}) is already taken")
        if len(candidates) > 1:
            ambiguous.append({"split": split, "row": row, "candidates": candidates, "chosen": free[0]})
        taken.add(free[0])
        ids.append(free[0])
    return ids, ambiguous


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build(shared: Path) -> dict:
    """The manifest (without its date) from the shared DSS files and ``SVAMP.json``."""
    problems = json.loads((shared / SVAMP_FILE).read_text(encoding="utf-8"))
    index = index_svamp(problems)
    texts = {s: [r["input"] for r in _read_jsonl(shared / f)] for s, f in DSS_FILES.items()}
    taken: set[str] = set()
    # test first and strictly: the evaluation set must be exact; train then avoids its IDs
    test, amb_test = match_split(texts["test"], index, taken, "test", strict=True)
    train, amb_train = match_split(texts["train"], index, taken, "train", strict=False)
    sources = {name: {"path": f"../shared/{rel}", "sha256": sha256(shared / rel)}
               for name, rel in (("dss_train", DSS_FILES["train"]), ("dss_test", DSS_FILES["test"]),
                                 ("svamp", SVAMP_FILE))}
    return {
        "dataset": "ChilleD/SVAMP",
        "id_field": "ID",
        "splits": {"train": train, "test": test},
        "provenance": {
            "script": "scripts/make_split_manifest.py",
            "what": "the Distilling step-by-step SVAMP split (800/200) used by Mind's Mirror, as SVAMP IDs "
                    "(the `ID` column of ChilleD/SVAMP and of SVAMP.json)",
            "sources": sources,
            "matching_rule": RULE,
            "counts": {"train": len(train), "test": len(test), "svamp_problems": len(problems),
                       "svamp_problems_in_no_split": len(problems) - len(taken),
                       "duplicate_texts_in_svamp": sum(len(v) - 1 for v in index.values()),
                       "ambiguous_rows": len(amb_test) + len(amb_train)},
            "ambiguous": amb_test + amb_train,
        },
    }


def write(manifest: dict, out: Path, date: str | None = None) -> bool:
    """Write ``manifest`` with a date; keep the file (and its date) when nothing else changed.
    -> whether the file was (re)written."""
    if out.exists():
        try:
            old = json.loads(out.read_text(encoding="utf-8"))
            old.get("provenance", {}).pop("date", None)
            if old == manifest:
                return False
        except (json.JSONDecodeError, AttributeError):
            pass  # unreadable: rewrite it
    manifest = json.loads(json.dumps(manifest))
    manifest["provenance"]["date"] = date or _dt.date.today().isoformat()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(out)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="the shared data folder")
    ap.add_argument("--out", type=Path, default=ROOT / "manifests" / "svamp_dss.json")
    args = ap.parse_args(argv)
    try:
        manifest = build(args.shared)
    except (ManifestError, OSError, KeyError, json.JSONDecodeError) as e:
        print(f"make_split_manifest: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    changed = write(manifest, args.out)
    c = manifest["provenance"]["counts"]
    print(f"{'wrote' if changed else 'unchanged'} {args.out}: train {c['train']}, test {c['test']}, "
          f"ambiguous rows {c['ambiguous_rows']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
