"""Schema-checked, atomic JSONL/JSON artifact I/O (pipeline/artifacts.py)."""
from __future__ import annotations

import json

import pytest

from pipeline.core.artifacts import read_json, read_jsonl, write_json, write_jsonl
from pipeline.core.errors import PipelineError

EXAMPLES = [
    {"id": "a1", "split": "train", "origin": "train", "index": 0, "question": "Luke scored 84 points. Per round?",
     "premise": None, "choices": None, "label": "( 84.0 / 2.0 )"},
    {"id": "c1", "split": "valid", "origin": "train", "index": 7, "question": "Where do trees grow? — ünïcode",
     "premise": None, "choices": ["ocean", "desert", "wooded area", "city", "sky"], "label": "wooded area"},
    {"id": "n1", "split": "test", "origin": "test", "index": 3, "question": "A person makes music.",
     "premise": "A man plays guitar.", "choices": None, "label": "entailment"},
]


def _bad_row():
    return {**EXAMPLES[0], "index": -1}  # index must be >= 0


def test_jsonl_round_trip(tmp_path):
    path = tmp_path / "sub" / "train.jsonl"  # parent folders are created
    assert write_jsonl(path, iter(EXAMPLES), "example") == 3
    assert read_jsonl(path, "example") == EXAMPLES
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and json.loads(lines[1]) == EXAMPLES[1]
    assert "ünïcode" in lines[1]  # written as UTF-8, not \u escapes
    assert [p.name for p in path.parent.iterdir()] == ["train.jsonl"]  # no temp files left


def test_jsonl_empty(tmp_path):
    path = tmp_path / "empty.jsonl"
    assert write_jsonl(path, [], "example") == 0
    assert path.exists() and read_jsonl(path, "example") == []


def test_read_corrupt_line_names_path_and_line(tmp_path):
    path = tmp_path / "train.jsonl"
    write_jsonl(path, EXAMPLES, "example")
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1][:-7]  # truncated line 2
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(PipelineError) as ei:
        read_jsonl(path, "example")
    assert f"{path}:2:" in str(ei.value)
    assert "corrupt" in str(ei.value)


def test_read_schema_violation_names_line(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [json.dumps(r) for r in EXAMPLES]
    rows[2] = json.dumps({**EXAMPLES[2], "split": "dev"})
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(PipelineError) as ei:
        read_jsonl(path, "example")
    msg = str(ei.value)
    assert f"{path}:3:" in msg
    assert "example.schema.json" in msg
    assert "split" in msg
    # without a schema the row is read as is
    assert read_jsonl(path, None)[2]["split"] == "dev"


def test_read_unknown_field_rejected(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({**EXAMPLES[0], "extra": 1}) + "\n", encoding="utf-8")
    with pytest.raises(PipelineError, match=rf"{path.name}:1:"):
        read_jsonl(path, "example")


def test_read_missing_file(tmp_path):
    with pytest.raises(PipelineError, match="not found"):
        read_jsonl(tmp_path / "nope.jsonl", "example")


def test_write_schema_violation_is_atomic(tmp_path):
    path = tmp_path / "train.jsonl"
    write_jsonl(path, EXAMPLES, "example")
    before = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    with pytest.raises(PipelineError) as ei:
        write_jsonl(path, [EXAMPLES[1], EXAMPLES[2], _bad_row()], "example")
    msg = str(ei.value)
    assert f"{path}:3" in msg and "being written" in msg
    assert path.read_bytes() == before
    assert path.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == ["train.jsonl"]  # temp file removed


def test_write_schema_violation_creates_nothing(tmp_path):
    path = tmp_path / "new.jsonl"
    with pytest.raises(PipelineError):
        write_jsonl(path, [EXAMPLES[0], _bad_row()], "example")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_write_failure_in_generator_is_atomic(tmp_path):
    path = tmp_path / "train.jsonl"
    write_jsonl(path, EXAMPLES, "example")
    before = path.read_bytes()

    def rows():
        yield EXAMPLES[0]
        raise RuntimeError("stage crashed mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(path, rows(), "example")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["train.jsonl"]


def test_json_round_trip_and_atomic(tmp_path):
    path = tmp_path / "m.json"
    metrics = {"dataset": "svamp", "rows": {"train": 3, "valid": 1, "test": 2},
               "source_rows": {"train": 4, "test": 2}, "valid_carved_from_train": True}
    write_json(path, metrics, "prepare_metrics")
    assert read_json(path, "prepare_metrics") == metrics
    before = path.read_bytes()
    with pytest.raises(PipelineError, match="prepare_metrics"):
        write_json(path, {**metrics, "rows": {"train": -1, "valid": 1, "test": 2}}, "prepare_metrics")
    assert path.read_bytes() == before


def test_read_json_corrupt(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{\n  "dataset": "svamp",\n  "rows": \n}\n', encoding="utf-8")
    with pytest.raises(PipelineError, match=rf"{path.name}:4: corrupt JSON"):
        read_json(path)


# --------------------------------------------------------------------------- typed: records.py models
from pipeline.core.artifacts import read_model, read_records, schema_name, write_model, write_records  # noqa: E402
from pipeline.core.records import (  # noqa: E402
    AssembleMetrics, CoT, EvalMetrics, Evaluation, Example, PrepareMetrics, Prediction, SelectionPoint, TeacherRecord,
    SpecCheck, TeacherComparison, TeacherOnCommon, TeachMetrics, TeachSplitMetrics, TrainingLog, TrainRow, TrainStep,
    VerdictCounts, artifact_models,
)
from pipeline.core.records_infer import InferMetrics, JudgeMetrics, Sample, SampleSet  # noqa: E402
from pipeline.core.records_forecast import (Forecast, RunForecast, StageForecast, TableForecast,  # noqa: E402
                                            TeacherForecast, Throughput)

_POINT = SelectionPoint(step=4, epoch=0.5, valid_accuracy=0.25, test_accuracy=None)
_LOG = TrainingLog(
    run="svamp-gpt35-cot5_se-base-teacher-k5-m5-s42", dataset="svamp", teacher="gpt35", method="cot5_se", student="base", labels="teacher", cots=5, self_evals=5, seed=42,
    started_at=1.7e9, finished_at=1.7e9 + 2, stage="stage2", device="cpu", precision="fp32", forward="separate",
    parameters=1234, init="models/svamp-gpt35-cot5_se-base-teacher-k5-m5-s42/stage1", world_size=1, rows=10, epochs=1.0, steps=8, seconds=1.5,
    examples_per_s=53.3, resumed_from_step=0, verdict_agreement=None, verdict_rows=0,
    history=[TrainStep(step=4, epoch=0.5, loss=2.5, pred_loss=2.0, expl_loss=3.0, lr=1e-3, examples=4),
             TrainStep(step=8, epoch=1.0, loss=float("nan"), pred_loss=1.0, expl_loss=None, lr=0.0, examples=2)],
    evals=[_POINT, SelectionPoint(step=8, epoch=1.0, valid_accuracy=0.125, test_accuracy=0.5)],
    selected=_POINT, paper_protocol_best=SelectionPoint(step=8, epoch=1.0, valid_accuracy=0.125, test_accuracy=0.5),
)
RECORDS = {
    Example: [Example.model_validate(e) for e in EXAMPLES],
    TeacherRecord: [TeacherRecord(id="a1", split="train", label="3", cots=[
        CoT(text="1 + 2 = 3. The answer is 3.", rationale="1 + 2 = 3.", answer="3", status="ok", correct=True,
            source="x.json#0", evaluations=[Evaluation(text="ok. Evaluation result: the given answer is correct.",
                                                       explanation="ok.", verdict="correct", status="ok")]),
        CoT(text="no idea", rationale=None, answer=None, status="no_answer", reason="no answer sentence",
            correct=None, source="x.json#0")]),
        TeacherRecord(id="a2", split="train", label="4", cots=[])],
    TrainRow: [TrainRow(id="a1", cot_index=0, input="q", label="3", rationale="1 + 2 = 3."),
               TrainRow(id="a1", cot_index=0, eval_index=2, input="q", label="correct", rationale="ok.")],
    Prediction: [Prediction(id="a1", input="q", gold="3", prediction="3", correct=True, rationale=None)],
    SampleSet: [SampleSet(id="a1", gold="3", samples=[
        Sample(rationale="1 + 2 = 3.", answer="3", correct=True, p_correct={"final": 0.75, "stage1": 0.5}),
        Sample(rationale="1 + 2 = 4.", answer="4", correct=False, error="arithmetic", p_correct={"final": 0.5})],
        vote="3", verify={"final": "3", "stage1": None})],
}
MODELS = [
    SpecCheck(params="params.yaml", runs="runs.yaml", valid=True),
    PrepareMetrics(dataset="svamp", rows={"train": 3, "valid": 1, "test": 2}, source_rows={"train": 4, "test": 2},
                   valid_carved_from_train=True),
    TeachMetrics(dataset="svamp", teacher="gpt35", backend="replay", splits={"train": TeachSplitMetrics(
        questions=2, questions_with_cots=1, cots=2, parsed=1, parse_rate=0.5, accuracy=1.0, correct=1,
        cot_accuracy=0.5, evaluations=1, verdicts={"correct": 1}, verdict_agreement=1.0)},
        verdicts=VerdictCounts(on_correct={"correct": 1}, on_wrong={}, wrong_precision=None, wrong_recall=None,
                               agreement=1.0)),
    TeacherComparison(dataset="svamp", split="train", questions=1, split_questions=2, teachers={"gpt35": TeacherOnCommon(
        accuracy=1.0, parse_rate=0.5, cot_accuracy=0.5, cots=2, answered=1, selected_by_gold=False)}),
    AssembleMetrics(assembly="svamp-gpt35-teacher-k5-m0", dataset="svamp", teacher="gpt35", labels="teacher", cots=5, self_evals=0, questions=2, stage2_rows=1, stage1_rows=1, valid_rows=1,
                    excluded_unparseable=1, excluded_unparseable_evaluations=0, questions_without_cots=1),
    EvalMetrics(run="svamp-gpt35-cot5-base-teacher-k5-m0-s42", dataset="svamp", teacher="gpt35", method="cot5", student="base", labels="teacher", cots=5, self_evals=0, seed=42, started_at=1.7e9, finished_at=1.7e9 + 1, split="test", accuracy=0.5, correct=1, total=2),
    _LOG,
    InferMetrics(run="svamp-gpt35-cot5_se-base-teacher-k5-m5-s42", dataset="svamp", teacher="gpt35", method="cot5_se",
                 student="base", labels="teacher", cots=5, self_evals=5, seed=42, k=2, split="test", questions=1,
                 temperature=1.0, top_p=1.0, vote_accuracy=1.0, vote_pick_rate=1.0, oracle_accuracy=1.0,
                 sample_accuracy=0.5, wrong_samples={"arithmetic": 1}, started_at=1.7e9, finished_at=1.7e9 + 1,
                 judges={"final": JudgeMetrics(verify_accuracy=1.0, wrong_precision=None, wrong_recall=0.0,
                                               wrong_recall_by_error={"arithmetic": 0.0}, auroc=1.0, pick_rate=1.0,
                                               mean_p_correct=0.625)}),
    _TH := Throughput(student="google/t5-v1_1-base", device="cuda", device_name="NVIDIA H200", precision="bf16",
                      train_examples_per_s=100.0, answer_decodes_per_s=50.0, rationale_decodes_per_s=5.0, lengths="bench rows",
                      source="assumed", measured="derived", command="python benchmarks/bench_train.py --calibrate F"),
    Forecast(profile="paper", device="cuda", throughputs={"base": _TH}, questions={"svamp": {"train": 720}},
             sizes_from={"svamp": "the source"}, runs=[RunForecast(
                 run="svamp-none-standard_ft-base-gold-k0-m0-s42", tables=["main"], answer_decodes=3, rationale_decodes=0,
                 hours=0.5, stages=[StageForecast(stage="stage2", rows=720, budget="300 epochs", steps=13500,
                                                  examples=216000, selection_points=300, decodes=84000)])],
             tables=[TableForecast(table="main", runs=1, steps=13500, selection_points=300, hours=0.5)],
             teachers=[TeacherForecast(teaching="svamp-luna", backend="openai", model="gpt-6-luna", requests=1,
                                       samples=5, prompt_tokens=10, completion_tokens_max=20, usd_max=0.01)],
             steps=13500, selection_points=300, hours=0.5, usd_max=0.01),
]


def _same(a, b) -> bool:  # model equality, with NaN equal to itself (a diverged loss is logged as NaN)
    return json.dumps(a.model_dump(mode="json")) == json.dumps(b.model_dump(mode="json"))


def test_every_artifact_model_is_covered():
    covered = {type(m) for m in MODELS} | set(RECORDS)
    assert covered == set(artifact_models().values())
    assert {schema_name(m) for m in covered} == set(artifact_models())


@pytest.mark.parametrize("model", list(RECORDS), ids=lambda m: m.__name__)
def test_records_round_trip(tmp_path, model):
    path = tmp_path / "sub" / "rows.jsonl"
    assert write_records(path, iter(RECORDS[model])) == len(RECORDS[model])
    back = read_records(path, model)
    assert back == RECORDS[model] and all(type(r) is model for r in back)
    # the file is the schema's JSON: what the untyped reader (other tools) sees
    assert read_jsonl(path, schema_name(model)) == [r.model_dump(mode="json") for r in RECORDS[model]]
    assert [p.name for p in path.parent.iterdir()] == ["rows.jsonl"]


@pytest.mark.parametrize("obj", MODELS, ids=lambda m: type(m).__name__)
def test_model_round_trip(tmp_path, obj):
    path = tmp_path / "m.json"
    write_model(path, obj)
    back = read_model(path, type(obj))
    assert type(back) is type(obj) and _same(back, obj)
    assert read_json(path, schema_name(type(obj))) == json.loads(json.dumps(obj.model_dump(mode="json")))


def test_read_records_schema_violation_is_one_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_records(path, RECORDS[TrainRow])
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.insert(1, "")  # blank lines are skipped but counted
    lines.append(json.dumps({**json.loads(lines[0]), "cot_index": "first"}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(PipelineError) as ei:
        read_records(path, TrainRow)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(f"{path}:4: ") and "train_row.schema.json" in msg and "cot_index" in msg


def test_read_model_schema_violation_is_one_line(tmp_path):
    path = tmp_path / "training_log.json"
    write_model(path, _LOG)
    obj = json.loads(path.read_text(encoding="utf-8"))
    obj["history"][1]["examples"] = -1
    path.write_text(json.dumps(obj, indent=2), encoding="utf-8")
    with pytest.raises(PipelineError) as ei:
        read_model(path, TrainingLog)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ") and "training_log.schema.json at history/1/examples" in msg
    del obj["history"][1]["examples"], obj["selected"]
    path.write_text(json.dumps(obj), encoding="utf-8")
    with pytest.raises(PipelineError, match=r"training_log\.json: does not match training_log\.schema\.json"):
        read_model(path, TrainingLog)


def test_write_invalid_model_refused_and_atomic(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_records(path, RECORDS[Example])
    before = path.read_bytes()
    bad = RECORDS[Example][1].model_copy(update={"index": -1})  # model_copy does not validate: the schema does
    with pytest.raises(PipelineError) as ei:
        write_records(path, [RECORDS[Example][0], bad])
    msg = str(ei.value)
    assert "\n" not in msg and f"{path}:2 (being written)" in msg and "example.schema.json at index" in msg
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]
    log = tmp_path / "log.json"
    with pytest.raises(PipelineError, match=r"log\.json \(being written\): does not match training_log"):
        write_model(log, _LOG.model_copy(update={"steps": -3}))
    assert not log.exists()


def test_model_valid_by_schema_but_not_by_model_is_one_line(tmp_path):
    # the schema is checked first; should a model be stricter than its schema, the model's error is one line too
    from pipeline.core.artifacts import parse_model

    with pytest.raises(PipelineError) as ei:
        parse_model(Example, {**EXAMPLES[0], "index": "x"}, "somewhere:7")
    assert str(ei.value).startswith("somewhere:7: not a valid Example at index: ") and "\n" not in str(ei.value)


def test_typed_helpers_refuse_models_without_a_schema(tmp_path):
    with pytest.raises(TypeError, match="TrainStep is not an artifact model"):
        write_records(tmp_path / "x.jsonl", [_LOG.history[0]])
