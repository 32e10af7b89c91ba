"""A question that a source file repeats is a row of its own: it gets an id of its own, it is counted
(``duplicate_questions`` in the prepare metrics), and no copy loses its teacher outputs: DSS teacher
files by row, text-matched files (MCC-KD) on every copy. The same id given by the source to two rows
is an error naming both lines. Synthetic files only (written to tmp_path)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.core.errors import PipelineError
from pipeline.core.spec import LocalSource, Params, load_params
from pipeline.stages import prepare, teach
from pipeline.sources import assign_ids, load
from support.examples import as_examples
from pipeline.tasks import get_task
from pipeline.tasks.base import text_id

ROOT = Path(__file__).resolve().parents[1]

N = 40
# row -> the earlier row it repeats: 5 three times, 7 twice (with other case and spacing), 11 twice
REPEATS = {20: 5, 33: 5, 30: 7, 39: 11}


def question(i: int) -> str:
    return f"Tom has {i} apples and finds 2 more. How many apples does Tom have now?"


def dss_rows() -> list[dict]:
    rows = [{"input": question(i), "label": f"( {i}.0 + 2.0 )"} for i in range(N)]
    for r, first in REPEATS.items():
        q = question(first)
        rows[r] = {"input": q.upper().replace(" ", "  ") if r == 30 else q, "label": f"( {first}.0 + 2.0 )"}
    return rows


def palm_text(row: int, rows: list[dict]) -> str:
    n = rows[row]["label"].split()[1].split(".")[0]
    return f"Row {row}: he has {n} and finds 2. The answer is ({n} + 2)."


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def params_with(dataset: str, spec: dict):
    """The offline params plus ``dataset``, whose teacher ``rec`` replays the files of ``spec['teacher']``."""
    doc = load_params(ROOT / "profiles" / "offline.yaml").model_dump(mode="json", exclude_unset=True)
    doc["teachers"]["rec"] = {"backend": "replay"}
    doc["datasets"][dataset] = {**spec, "teacher": "rec", "teachers": {"rec": spec["teacher"]}}
    return Params.model_validate(doc)


def read_split(base: Path, kind: str, dataset: str, split: str) -> list[dict]:
    return [json.loads(x) for x in (base / "data" / kind / dataset / f"{split}.jsonl").read_text().splitlines()]


def test_ids_unique_and_stable():
    """The first copy keeps the id it always had (the text's hash); repeats get -2, -3 in file order."""
    task = get_task("svamp")
    rows = [task.from_local_row(r, "dss") for r in dss_rows()]
    where = {"train": [f"f:{i + 1}" for i in range(N)]}
    assign_ids(task, {"train": rows}, where)
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == N
    assert ids[0] == text_id(question(0)) and ids[5] == text_id(question(5))
    assert ids[20] == f"{text_id(question(5))}-2" and ids[33] == f"{text_id(question(5))}-3"
    assert ids[30] == text_id(dss_rows()[30]["input"])  # another text (case, spaces): its own hash
    again = [task.from_local_row(r, "dss") for r in dss_rows()]
    assign_ids(task, {"train": again}, where)
    assert [r["id"] for r in again] == ids


def test_dss_file_with_repeated_questions_keeps_every_rows_teacher_output(tmp_path, monkeypatch):
    rows = dss_rows()
    test_rows = [{"input": question(i), "label": f"( {i}.0 + 2.0 )"} for i in (3, 3, 4)]  # repeats in test too
    src = {"train": write_jsonl(tmp_path / "svamp_train.json", rows),
           "test": write_jsonl(tmp_path / "svamp_test.json", test_rows)}
    palm = {"train": tmp_path / "train_CoT_0.json", "test": tmp_path / "test_CoT_0.json"}
    palm["train"].write_text(json.dumps([palm_text(i, rows) for i in range(N)]))
    palm["test"].write_text(json.dumps([palm_text(i, test_rows) for i in range(3)]))
    params = params_with("dup", {
        "task": "svamp", "source": {"kind": "local", "format": "dss", "files": src},
        "valid": {"fraction": 0.25, "seed": 0},
        "teacher": {"backend": "replay", "sources": [
            {"format": "dss_palm", "files": {s: [str(p)] for s, p in palm.items()}}]}})
    monkeypatch.chdir(tmp_path)

    prep = prepare.run(params, "dup")
    # train: 5 twice more, 7 once more (other case/spacing), 11 once more; the test copy of 3 and 3, 4 (also in train)
    assert prep.duplicate_questions == 4 + 3
    assert prep.source_rows == {"train": N, "test": 3}
    examples = {s: read_split(tmp_path, "prepared", "dup", s) for s in ("train", "valid", "test")}
    all_ids = [e["id"] for exs in examples.values() for e in exs]
    assert len(all_ids) == len(set(all_ids)) == N + 3
    # valid is carved by question: the copies of a repeated question sit on one side only
    side = {}
    for split in ("train", "valid"):
        for e in examples[split]:
            side.setdefault(" ".join(e["question"].lower().split()), set()).add(split)
    assert examples["valid"] and all(len(s) == 1 for s in side.values()), side
    repeated = {" ".join(question(i).lower().split()) for i in REPEATS.values()}
    assert {q for q in repeated if side[q] == {"valid"}}, "the seed puts no repeated question in valid: pick another"

    metrics = teach.run(params, "dup", "rec")
    for split, exs in examples.items():
        m = metrics.splits[split]
        assert m.questions_with_cots == m.questions == len(exs)
        assert m.unmatched_source_rows == 0
        recs = read_split(tmp_path, "teacher", "dup/rec", split)
        assert [r["id"] for r in recs] == [e["id"] for e in exs]
        source = rows if split != "test" else test_rows
        for ex, rec in zip(exs, recs):  # every row has its own row's output, correct
            assert [c["text"] for c in rec["cots"]] == [palm_text(ex["index"], source)]
            assert rec["cots"][0]["correct"] is True


def test_text_matched_teacher_gives_every_copy_its_outputs(tmp_path, monkeypatch):
    """MCC-KD: source and teacher are the same file, matched by question text. Each copy gets the
    CoTs of its own row (the file repeats the question as often as the dataset)."""
    rows = []
    for i, r in enumerate(dss_rows()):
        n = int(r["label"].split()[1].split(".")[0])
        rows.append({"instruction": r["input"], "label": str(n + 2),
                     "output": [f"Row {i}, CoT {j}: {n} + 2 = {n + 2}." for j in range(2)]})
    path = tmp_path / "train.json"
    path.write_text(json.dumps(rows))
    params = params_with("dupm", {
        "task": "svamp", "source": {"kind": "local", "format": "mcckd", "files": {"train": str(path)}},
        "teacher": {"backend": "replay", "sources": [
            {"format": "mcckd", "files": {"train": [str(path)]}, "parse": "lenient"}]}})
    monkeypatch.chdir(tmp_path)
    assert prepare.run(params, "dupm").duplicate_questions == len(REPEATS)
    metrics = teach.run(params, "dupm", "rec")
    for split in ("train", "valid"):
        exs = read_split(tmp_path, "prepared", "dupm", split)
        recs = read_split(tmp_path, "teacher", "dupm/rec", split)
        assert metrics.splits[split].questions_with_cots == len(exs)
        for ex, rec in zip(exs, recs):
            assert [c["text"] for c in rec["cots"]] == rows[ex["index"]]["output"]
            assert all(c["status"] == "ok" and c["correct"] is True for c in rec["cots"])


def test_text_matched_teacher_with_one_copy_gives_it_to_every_copy(tmp_path):
    """The teacher file has the question once, the dataset three times: every copy gets it."""
    from pipeline.core.spec import ReplayFiles, ReplayTeacher
    from pipeline.teacher.replay import replay

    task = get_task("svamp")
    loaded = load(task, LocalSource(kind="local", format="dss",
                                   files={"train": write_jsonl(tmp_path / "t.json", dss_rows())}))
    exs = as_examples(loaded["train"], "train")
    teacher_file = tmp_path / "mcckd.json"
    teacher_file.write_text(json.dumps([{"instruction": question(5), "output": ["5 + 2 = 7. The answer is 7."]}]))
    teacher = ReplayTeacher(backend="replay", sources=[ReplayFiles(format="mcckd", files={"train": [str(teacher_file)]})])
    recs, unmatched = replay(task, teacher, {"train": exs}, {"train": N})
    assert unmatched == {"train": 0}
    assert [i for i, r in enumerate(recs["train"]) if r["cots"]] == [5, 20, 33]


def test_same_source_id_on_two_rows_is_one_error_naming_both_lines(tmp_path):
    rows = [{"uid": f"u{i}", "premise": f"p {i}", "hypothesis": f"h {i}", "label": 0} for i in range(6)]
    rows[4]["uid"] = "u1"
    path = write_jsonl(tmp_path / "anli.jsonl", rows)
    with pytest.raises(PipelineError) as e:
        load(get_task("anli"), LocalSource(kind="local", format="dss", files={"valid": path}))
    msg = str(e.value)
    assert msg.startswith(f"{path}:5: ") and f"{path}:2" in msg and "'u1'" in msg and "\n" not in msg
