"""Typed examples for the tests, as ``pipeline/stages/prepare.py`` writes them (``Example`` records):
from a few fields, or from the source rows that ``pipeline.sources.load`` gives."""
from __future__ import annotations

from pipeline.core.records import Example
from pipeline.sources import FIELDS  # what a source row gives an Example


def example(question: str = "q", label: str = "x", **fields) -> Example:
    return Example(**{"id": "ex0", "split": "train", "origin": "train", "index": 0, "question": question,
                      "label": label, **fields})


def as_examples(rows: list[dict], split: str) -> list[Example]:
    """Source rows plus their split, origin and row index."""
    return [Example(**{k: r[k] for k in FIELDS if k in r}, split=split, origin=split, index=i)
            for i, r in enumerate(rows)]
