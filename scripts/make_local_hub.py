"""Build local stand-ins of the paper's Hugging Face Hub datasets and student, in the Hub's own
layout, from the shared offline data, so that the unchanged paper code path (``kind: hub`` sources,
``train.from_config: false``) runs offline: ``datasets.load_dataset(<dir>, None, split=<name>)`` and
``T5ForConditionalGeneration.from_pretrained(<dir>)`` read them exactly as they read the Hub.

Written under ``--out`` (default ``local_hub/``, git-ignored), one folder per Hub id:

- ``ChilleD/SVAMP``: splits ``train`` (700) / ``test`` (300), columns ``ID, Body, Question, Equation,
  Answer, Type, question_concat``. Rows come from SVAMP.json (original IDs kept); membership is
  ChilleD's, known from the MCC-KD files (train = train.json, test = dev.json + test.json), matched
  to SVAMP.json by normalised text, in those files' order.
- ``tau/commonsense_qa``: ``train`` (9741) = the DSS train file, ``validation`` (1221) = the DSS test
  file (the official dev set), and a small unlabelled ``test`` (the first 100 validation questions
  with ``answerKey`` "": the Hub's real test questions are not available offline). Columns ``id,
  question, question_concept ("": not in the DSS files), choices {label: A..E, text}, answerKey``.
- ``facebook/anli``: only round 1, and only its dev set exists offline (anli1_valid.json, 1000 rows):
  it is partitioned in file order into ``train_r1`` (rows 0-599), ``dev_r1`` (600-799) and
  ``test_r1`` (800-999). Columns ``uid, premise, hypothesis, label (0/1/2), reason``.
- ``google/t5-v1_1-base``: a tiny random student in the original t5-v1_1 checkpoint layout: the real
  config with the sizes shrunk (``tie_word_embeddings: false`` kept), seeded random weights with a
  separate ``lm_head.weight``, and the real T5 tokenizer files.

Datasets are parquet files under ``data/`` with a README.md whose YAML ``configs`` name the splits
(the Hub's mechanism for split names like ``train_r1``). Output is deterministic; files whose bytes
would not change are left alone.

    python scripts/make_local_hub.py [--out local_hub] [--shared ../shared]
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

from pipeline.tasks.base import normalize_text as normalize  # the pipeline's own matching rule

ROOT = Path(__file__).resolve().parents[1]
STUDENT_SIZES = {"d_model": 64, "d_ff": 128, "d_kv": 16, "num_heads": 4, "num_layers": 2, "num_decoder_layers": 2}
# the three t5-v1_1 sizes the tables name: (config file in ../shared/models, sizes); only the small and
# base configs are available offline, so the large stand-in is the base config grown a little
STUDENTS = {
    "small": ("t5-v1_1-small-config", {"d_model": 32, "d_ff": 64, "d_kv": 8, "num_heads": 4, "num_layers": 1,
                                       "num_decoder_layers": 1}),
    "base": ("t5-v1_1-base-config", STUDENT_SIZES),
    "large": ("t5-v1_1-base-config", {"d_model": 96, "d_ff": 192, "d_kv": 16, "num_heads": 6, "num_layers": 3,
                                      "num_decoder_layers": 3}),
}
TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "tokenizer_config.json")
ANLI_PARTS = {"train_r1": (0, 600), "dev_r1": (600, 800), "test_r1": (800, 1000)}
CQA_TEST_ROWS = 100
LETTERS = "ABCDE"


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _put(path: Path, data: bytes, written: list[Path]) -> None:
    """Write ``data`` to ``path`` atomically, unless it already holds exactly those bytes."""
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    written.append(path)


def _readme(title: str, splits: list[str], notes: str) -> str:
    """A dataset card whose YAML ``configs`` map each split name to its parquet file."""
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for s in splits:
        lines += [f"  - split: {s}", f"    path: data/{s}-00000-of-00001.parquet"]
    return "\n".join(lines + ["---", "", f"# {title} (local stand-in)", "", notes.strip(), ""])


def _write_dataset(root: Path, splits: dict[str, list[dict]], features, title: str, notes: str,
                   written: list[Path]) -> None:
    import datasets
    from datasets.utils import logging as ds_logging

    bars = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        for name, rows in splits.items():
            buf = io.BytesIO()
            datasets.Dataset.from_list(rows, features=features).to_parquet(buf)
            _put(root / "data" / f"{name}-00000-of-00001.parquet", buf.getvalue(), written)
    finally:
        if bars:
            ds_logging.enable_progress_bar()
    _put(root / "README.md", _readme(title, list(splits), notes).encode(), written)


# --------------------------------------------------------------------------- datasets
def svamp_chilled(shared: Path) -> dict[str, list[dict]]:
    """ChilleD/SVAMP rows: SVAMP.json problems in the MCC-KD files' membership and order."""
    problems = json.loads((shared / "data/svamp/SVAMP.json").read_text(encoding="utf-8"))
    by_text: dict[str, list[dict]] = {}
    for p in problems:
        by_text.setdefault(normalize(f"{p['Body']} {p['Question']}"), []).append(p)
    out: dict[str, list[dict]] = {}
    for split, files in (("train", ("train",)), ("test", ("dev", "test"))):
        out[split] = []
        for f in files:
            for r in json.loads((shared / f"data/svamp-mcckd/{f}.json").read_text(encoding="utf-8")):
                hits = by_text.get(normalize(r["instruction"]), [])
                if len(hits) != 1:
                    raise ValueError(f"svamp-mcckd/{f}.json: {len(hits)} SVAMP problems match {r['instruction'][:60]!r}")
                p = hits[0]
                out[split].append({"ID": p["ID"], "Body": p["Body"], "Question": p["Question"],
                                   "Equation": p["Equation"], "Answer": float(p["Answer"]), "Type": p["Type"],
                                   "question_concat": f"{p['Body'].strip()} {p['Question'].strip()}"})
    ids = [r["ID"] for rows in out.values() for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError("svamp-mcckd: a SVAMP problem is in more than one ChilleD split")
    return out


def _cqa_row(r: dict, labelled: bool = True) -> dict:
    """tau/commonsense_qa columns from a DSS row; a duplicated answer text takes its first letter
    (the canonical label, the choice text, is the same either way)."""
    choices = list(r["choices"])
    return {"id": r["id"], "question": r["question"], "question_concept": "",
            "choices": {"label": list(LETTERS[: len(choices)]), "text": choices},
            "answerKey": LETTERS[choices.index(r["answer"])] if labelled else ""}


def cqa(shared: Path) -> dict[str, list[dict]]:
    train = _read_jsonl(shared / "data/cqa/cqa_train.json")
    dev = _read_jsonl(shared / "data/cqa/cqa_test.json")
    return {"train": [_cqa_row(r) for r in train], "validation": [_cqa_row(r) for r in dev],
            "test": [_cqa_row(r, labelled=False) for r in dev[:CQA_TEST_ROWS]]}


def anli(shared: Path) -> dict[str, list[dict]]:
    rows = _read_jsonl(shared / "data/anli1/anli1_valid.json")
    if len(rows) != 1000:
        raise ValueError(f"anli1_valid.json: expected 1000 rows, got {len(rows)}")
    keep = ("uid", "premise", "hypothesis", "label", "reason")
    return {name: [{k: r[k] for k in keep} for r in rows[a:b]] for name, (a, b) in ANLI_PARTS.items()}


def _features() -> dict:
    from datasets import ClassLabel, Features, List, Value

    s = Value("string")
    return {
        "svamp": Features({"ID": s, "Body": s, "Question": s, "Equation": s, "Answer": Value("float64"),
                           "Type": s, "question_concat": s}),
        "cqa": Features({"id": s, "question": s, "question_concept": s,
                         "choices": {"label": List(s), "text": List(s)}, "answerKey": s}),
        "anli": Features({"uid": s, "premise": s, "hypothesis": s,
                          "label": ClassLabel(names=["entailment", "neutral", "contradiction"]), "reason": s}),
    }


# --------------------------------------------------------------------------- student
def student_config(shared: Path, size: str = "base") -> dict:
    """The real google/t5-v1_1-<size> config (base for large) with the sizes shrunk; everything else as in the file."""
    config_dir, sizes = STUDENTS[size]
    cfg = json.loads((shared / "models" / config_dir / "config.json").read_text(encoding="utf-8"))
    cfg.update(sizes)
    assert cfg["tie_word_embeddings"] is False
    return cfg


def student_state_dict(cfg: dict, seed: int = 0) -> dict:
    """Seeded random weights keyed like a t5-v1_1 checkpoint: ``shared.weight`` (the encoder and
    decoder input embeddings) and a separate, differently initialised ``lm_head.weight``."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(T5Config(**cfg))
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()
          if k not in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")}
    gen = torch.Generator().manual_seed(seed + 1)
    sd["lm_head.weight"] = torch.randn(cfg["vocab_size"], cfg["d_model"], generator=gen) * cfg["d_model"] ** -0.5
    return sd


def write_student(root: Path, shared: Path, written: list[Path], size: str = "base") -> None:
    from safetensors.torch import save

    cfg = student_config(shared, size)
    _put(root / "config.json", (json.dumps(cfg, indent=2) + "\n").encode(), written)
    _put(root / "model.safetensors", save(student_state_dict(cfg), metadata={"format": "pt"}), written)
    for f in TOKENIZER_FILES:
        _put(root / f, (shared / "models/t5-tokenizer" / f).read_bytes(), written)
    _put(root / "README.md", (
        f"# google/t5-v1_1-{size} (local stand-in)\n\nNOT the pretrained model: seeded random weights of a "
        f"tiny t5-v1_1-shaped T5 (d_model {cfg['d_model']}, d_ff {cfg['d_ff']}, {cfg['num_layers']}+"
        f"{cfg['num_decoder_layers']} layers, {cfg['num_heads']} heads) in the original checkpoint "
        "layout (untied `lm_head`, `tie_word_embeddings: false`), with the real T5 tokenizer. Made by "
        "scripts/make_local_hub.py for offline runs of the paper code path.\n").encode(), written)


# --------------------------------------------------------------------------- build
NOTES = {
    "svamp": "ChilleD/SVAMP's split (700 / 300) of the 1000 SVAMP problems: rows from SVAMP.json with their "
             "original IDs; membership from the MCC-KD files (train = train.json, test = dev.json + test.json), "
             "matched by normalised text. Made by scripts/make_local_hub.py.",
    "cqa": "train = the Distilling step-by-step CQA train file (9741); validation = its test file, the official "
           f"dev set (1221); test = the first {CQA_TEST_ROWS} validation questions with answerKey \"\" (a stand-in "
           "for the Hub's unlabelled test split, which is not available offline). question_concept is \"\" (not "
           "in the DSS files). A duplicated answer text takes its first letter. Made by scripts/make_local_hub.py.",
    "anli": "Only ANLI round 1's dev set is available offline (anli1_valid.json, 1000 rows). It is partitioned "
            "in file order: train_r1 = rows 0-599, dev_r1 = rows 600-799, test_r1 = rows 800-999. These are NOT "
            "the Hub's splits (train_r1 has 16946 rows). Made by scripts/make_local_hub.py.",
}


def build(out_dir: str | Path = ROOT / "local_hub", shared_dir: str | Path = ROOT.parent / "shared") -> list[Path]:
    """Write every stand-in under ``out_dir`` from ``shared_dir`` -> the files (re)written."""
    out, shared = Path(out_dir), Path(shared_dir)
    feats = _features()
    written: list[Path] = []
    _write_dataset(out / "ChilleD/SVAMP", svamp_chilled(shared), feats["svamp"], "ChilleD/SVAMP", NOTES["svamp"], written)
    _write_dataset(out / "tau/commonsense_qa", cqa(shared), feats["cqa"], "tau/commonsense_qa", NOTES["cqa"], written)
    _write_dataset(out / "facebook/anli", anli(shared), feats["anli"], "facebook/anli", NOTES["anli"], written)
    for size in STUDENTS:
        write_student(out / f"google/t5-v1_1-{size}", shared, written, size)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "local_hub")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = ap.parse_args(argv)
    try:
        written = build(args.out, args.shared)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        print(f"make_local_hub: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    for p in written:
        print(f"wrote {p}")
    print(f"{args.out}: {len(written)} file(s) written, the rest unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
