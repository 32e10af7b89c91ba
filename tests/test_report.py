"""The report stage (pipeline/stages/report.py): every table of the offline profile from fake metrics
files, in a temporary directory; no dvc, no training. MLflow is a recorder (``sync_runs``, which gets
every evaluated run with its training logs, and ``log_report``), but for the last test."""
from __future__ import annotations

import csv
import json
import shutil

import pytest

import pipeline.tracking as tracking
from pipeline.core.artifacts import write_model
from pipeline.core.records import (EvalMetrics, SelectionPoint, TeacherComparison, TeacherOnCommon, TeachMetrics,
                                   TeachSplitMetrics, TrainingLog, TrainStep, VerdictCounts)
from pipeline.runs import cells, tables_of
from pipeline.core.spec import load_params
from pipeline.core.spec_tables import TableSpec
from pipeline.stages import report
from support import ROOT

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def params(tmp_path):
    """The offline profile, with the #CoTs table at k = 1, 3, 5 and all four one-stage methods on CQA
    (the quickstart runs fewer of both)."""
    from ruamel.yaml import YAML

    yaml = YAML()
    doc = yaml.load((ROOT / "profiles" / "offline.yaml").read_text())
    doc["tables"]["cots"]["values"]["cots"] = [1, 3, 5]
    doc["tables"]["main"]["omit"] = [{"method": "cot1_se", "dataset": "cqa"}, {"method": "cot5_se", "dataset": "cqa"}]
    path = tmp_path / "offline-k135.yaml"
    with open(path, "w") as f:
        yaml.dump(doc, f)
    return load_params(path)


@pytest.fixture
def logged(monkeypatch):
    """``pipeline.tracking.sync_runs`` and ``log_report`` replaced by recorders of their calls: sync_runs
    gives run ``<name>`` the id ``id-<name>``."""
    calls = []

    def sync_runs(params, items):
        items = list(items)
        calls.append({"synced": items})
        return {it.run.name: f"id-{it.run.name}" for it in items}

    def log_report(params, artifacts, run_tables, mlflow_run_ids, started_at=None):
        calls[-1].update({"artifacts": list(artifacts), "run_tables": run_tables, "ids": mlflow_run_ids})
        return "fake-run-id"

    monkeypatch.setattr(tracking, "sync_runs", sync_runs)
    monkeypatch.setattr(tracking, "log_report", log_report, raising=False)
    return calls


@pytest.fixture
def proj(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cell_runs(params, table, row, col=None):
    for c in cells(params, table, omitted=True):
        if str(c.row) == str(row) and str(c.col) == str(col):
            return c.runs
    raise KeyError((table, row, col))


def write_eval(run, accuracy, paper=None, agreement=None, train=True):
    """The run's metrics/evaluate file, and (``train``) its training logs in metrics/train."""
    m = EvalMetrics(run=run.name, dataset=run.dataset, teacher=run.teacher, method=run.method, student=run.student, labels=run.labels,
                    cots=run.cots, self_evals=run.self_evals, seed=run.seed, split="test", accuracy=accuracy,
                    correct=int(200 * accuracy), total=200, started_at=1.0, finished_at=2.0)
    write_model(f"metrics/evaluate/{run.name}.json", m)
    # the paper protocol's best-on-test lives in stage 2's log, the verdict agreement in stage 1's
    for stage in (("stage1",) if run.two_stage else ()) + (("stage2",) if train else ()):
        write_model(f"metrics/train/{run.name}/{stage}.json",
                    training_log(run, stage, paper if stage == "stage2" else None,
                                 agreement if stage == "stage1" else None))


def training_log(run, stage, paper=None, agreement=None):
    point = SelectionPoint(step=8, epoch=1.0, valid_accuracy=0.5, test_accuracy=None)
    best = SelectionPoint(step=8, epoch=1.0, valid_accuracy=0.5, test_accuracy=paper) if paper is not None else None
    return TrainingLog(
        run=run.name, dataset=run.dataset, teacher=run.teacher, method=run.method, student=run.student,
        labels=run.labels, cots=run.cots,
        self_evals=run.self_evals, seed=run.seed, stage=stage, device="cpu", precision="fp32", forward="separate",
        parameters=1, init="base", world_size=1, rows=4, epochs=1.0, steps=8, seconds=1.0, started_at=0.0,
        finished_at=0.5, examples_per_s=4.0, resumed_from_step=0, verdict_agreement=agreement,
        verdict_rows=0 if agreement is None else 20, selected=point, paper_protocol_best=best, evals=[point],
        history=[TrainStep(step=8, epoch=1.0, loss=1.0, pred_loss=1.0, expl_loss=None, lr=1e-3, examples=4)])


def split(questions, answered, accuracy, parse_rate):
    return TeachSplitMetrics(questions=questions, questions_with_cots=answered, cots=answered, parsed=answered,
                             parse_rate=parse_rate, accuracy=accuracy, correct=int(accuracy * answered),
                             cot_accuracy=accuracy)


def write_teach(ds, teacher="palm", verdicts=None, **splits):
    write_model(f"metrics/teach/{ds}/{teacher}.json",
                TeachMetrics(dataset=ds, teacher=teacher, backend="replay", splits=splits, verdicts=verdicts))


def write_compared(ds, split_name, questions, **teachers):
    """metrics/teachers/<ds>.json: each teacher's (accuracy, parse rate, selected by gold) on the common questions."""
    write_model(f"metrics/teachers/{ds}.json", TeacherComparison(
        dataset=ds, split=split_name, questions=questions, split_questions=questions, teachers={
            t: TeacherOnCommon(accuracy=a, parse_rate=p, cot_accuracy=a, cots=questions, answered=questions,
                               selected_by_gold=sel) for t, (a, p, sel) in teachers.items()}))


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def md_row(path, row):
    """The cells of a markdown table row, by its first cell."""
    for line in path.read_text().splitlines():
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if line.startswith("|") and parts[0] == row:
            return parts[1:]
    raise KeyError(row)


def with_reference(extra: str = "") -> None:
    (report.REPORTS).mkdir(exist_ok=True)
    shutil.copy(ROOT / "reports" / "reference.csv", report.REFERENCE)
    with open(report.REFERENCE, "a") as f:
        f.write(extra)


def test_every_table_from_the_metrics_files(proj, params, logged, capsys):
    ft = cell_runs(params, "main", "standard_ft", "svamp")[0]
    write_eval(ft, 0.5, paper=0.6)
    cqa = cell_runs(params, "main", "cot5", "cqa")[0]
    write_eval(cqa, 0.25, train=False)  # evaluated, but its training log is not there: not logged
    for k, acc in ((1, 0.2), (3, 0.3)):
        write_eval(cell_runs(params, "cots", "cot5_se", k)[0], acc, agreement=0.9)
    write_compared("svamp_dss", "test", 200, palm=(0.75, 0.9, False))
    write_compared("anli1", "valid", 100, palm=(0.7, 1.0, False))
    write_compared("svamp", "train", 487, gpt35=(0.9, 0.99, False), gpt4o=(0.97, 0.98, True))  # gemini: not written
    write_teach("svamp", "gpt35", VerdictCounts(on_correct={"correct": 40, "wrong": 2, "uncertain": 1},
                                                on_wrong={"correct": 3, "wrong": 4, "unparsed": 1},
                                                wrong_precision=4 / 6, wrong_recall=0.5, agreement=44 / 49),
                train=split(700, 700, 0.9, 0.99))
    n_ref = len((ROOT / "reports" / "reference.csv").read_text().splitlines())
    with_reference("nosuch,standard_ft,svamp,1.0,made up\nmain,nosuch_method,svamp,2.0,made up\n")
    (proj / "reports/tables").mkdir(parents=True)
    (proj / "reports/figures").mkdir(parents=True)
    (proj / "reports/tables/results.md").write_text("stale")
    (proj / "reports/figures/results.png").write_bytes(b"stale")

    out = report.run(params)

    assert all(p.exists() for p in out)
    for name in params.tables:
        assert (proj / f"reports/tables/{name}.md").exists() and (proj / f"reports/tables/{name}.csv").exists()
        assert (proj / f"reports/figures/{name}.png").read_bytes().startswith(PNG)
    assert not (proj / "reports/tables/results.md").exists() and not (proj / "reports/figures/results.png").exists()

    main_md = proj / "reports/tables/main.md"
    text = main_md.read_text()
    assert text.startswith("# " + params.tables["main"].title)
    assert "regenerates: " + params.tables["main"].paper in text and "student = base" in text
    assert "seeds: 42" in text and "accuracy: test accuracy of the checkpoint selected on the validation" in text
    assert md_row(main_md, "standard_ft") == ["50.00 [ref 62.63; diff -12.63]", "n/a [ref 62.19]"]
    assert md_row(main_md, "cot5") == ["n/a", "25.00"]
    assert md_row(main_md, "cot1_se") == ["n/a", "-"]
    rows = {(r["row"], r["col"]): r for r in read_csv(proj / "reports/tables/main.csv")}
    assert list(read_csv(proj / "reports/tables/main.csv")[0]) == list(report.CSV_COLUMNS)
    assert rows["standard_ft", "svamp"] == {"row": "standard_ft", "col": "svamp", "value": "50.00", "std": "",
                                           "n": "1", "seeds": "1", "status": "ok", "reference": "62.63",
                                           "diff": "-12.63", "note": ""}
    assert rows["cot1_se", "cqa"]["status"] == "omitted" and rows["standard_kd", "svamp"]["status"] == "missing"

    teachers_md = proj / "reports/tables/teachers.md"
    palm = md_row(teachers_md, "palm")  # columns: (svamp, cqa, svamp_dss, anli1) x (accuracy, parse rate)
    assert palm[:2] == ["-", "-"] and palm[2:4] == ["n/a", "n/a"]
    assert palm[4:] == ["75.00 [ref 74.00; diff +1.00]", "90.00", "70.00 [ref 66.80; diff +3.20]", "100.00"]
    assert md_row(teachers_md, "gpt4o")[:2] == ["97.00*", "98.00"]  # selected by gold: marked, and said so
    assert md_row(teachers_md, "gemini")[:2] == ["n/a", "n/a"]
    text = teachers_md.read_text()
    assert "anli1: 100 of 100 valid questions (every teacher answered them)" in text
    assert "hold only CoTs that reached the gold answer" in text
    t_rows = {(r["row"], r["col"]): r for r in read_csv(proj / "reports/tables/teachers.csv")}
    assert t_rows["palm", "anli1 teacher_parse_rate"]["value"] == "100.00"
    assert t_rows["palm", "svamp teacher_accuracy"]["status"] == "omitted"
    judges = md_row(proj / "reports/tables/teacher_judges.md", "gpt35")  # counts as counts, ratios in percent
    assert judges == ["51", "89.80", "66.67", "50.00", "40", "2", "1", "3", "4", "0", "1"]
    assert md_row(proj / "reports/tables/teacher_judges.md", "gpt4o")[:2] == ["n/a", "n/a"]

    # reference values that match no cell: a warning each, listed in the index
    err = capsys.readouterr().err
    assert f"warning: reports/reference.csv:{n_ref + 1}: table nosuch has no cell (standard_ft, svamp)" in err
    assert f"warning: reports/reference.csv:{n_ref + 2}: table main has no cell (nosuch_method, svamp)" in err
    assert "table main has no cell (standard_ft, anli1)" in err  # the offline main table has no ANLI column
    index = (proj / "reports/tables/README.md").read_text()
    assert "[main](main.md)" in index and "[teachers](teachers.md)" in index
    unmatched = index.split("## Unmatched reference values")[1]
    assert f"line {n_ref + 2}: table main, row nosuch_method, col svamp" in unmatched and "nosuch" in unmatched

    # the line figures' data, for dvc plots
    fig = read_csv(proj / "reports/figures/cots.csv")
    assert list(fig[0]) == ["cots", "cot5", "cot5_se"]
    assert [r["cots"] for r in fig] == ["1", "3", "5"]
    assert [r["cot5_se"] for r in fig] == ["20.00", "30.00", ""] and all(r["cot5"] == "" for r in fig)
    assert list(read_csv(proj / "reports/figures/self_evals.csv")[0]) == ["self_evals", "cot5_se"]
    assert not (proj / "reports/figures/main.csv").exists()

    headline = json.loads((proj / "metrics/headline.json").read_text())
    assert list(headline) == list(params.tables)
    assert headline["main"]["standard_ft/svamp"] == 50.0 and headline["main"]["standard_kd/svamp"] is None
    assert "cot1_se/cqa" not in headline["main"] and len(headline["main"]) == 6 * 2 - 2
    assert headline["teachers"]["palm/svamp_dss teacher_accuracy"] == 75.0
    assert headline["teacher_judges"]["gpt35/se_evaluations"] == 51
    assert headline["cots"]["cot5_se/1"] == 20.0

    # MLflow: every evaluated run with its training logs (stage 1 first), the ids in metrics/mlflow_runs.json
    [call] = logged
    se = [cell_runs(params, "cots", "cot5_se", k)[0] for k in (1, 3)]
    synced = {it.run.name: it for it in call["synced"]}
    assert set(synced) == {ft.name} | {r.name for r in se}
    assert f"metrics/train/{cqa.name}/stage2.json missing: {cqa.name} not logged to MLflow" in err
    assert [str(p) for p in synced[ft.name].files] == [f"metrics/evaluate/{ft.name}.json",
                                                        f"metrics/train/{ft.name}/stage2.json"]
    assert synced[ft.name].metrics.accuracy == 0.5 and [x.stage for x in synced[ft.name].logs] == ["stage2"]
    assert [x.stage for x in synced[se[0].name].logs] == ["stage1", "stage2"]
    assert [p.name for p in synced[se[0].name].files[1:]] == ["stage1.json", "stage2.json"]
    ids = {n: f"id-{n}" for n in synced}
    assert call["ids"] == ids and json.loads((proj / "metrics/mlflow_runs.json").read_text()) == ids
    assert call["artifacts"] == out and out[-1].as_posix() == "metrics/mlflow_runs.json"
    assert call["run_tables"] == tables_of(params)


def test_several_seeds_mean_std_n(proj, params, logged):
    t = params.tables["cots"].model_copy(update={"seeds": [1, 2]})
    params = params.model_copy(update={"tables": {"cots": t}})
    a, b = cell_runs(params, "cots", "cot5", 1)
    write_eval(a, 0.4)
    write_eval(b, 0.5)
    write_eval(cell_runs(params, "cots", "cot5", 3)[0], 0.3)

    report.run(params)

    md = proj / "reports/tables/cots.md"
    assert md_row(md, "cot5")[:3] == ["45.00 ± 7.07 (n=2)", "30.00 (n=1)", "n/a"]
    assert "seeds: 1, 2" in md.read_text() and "mean ± sample std over the seeds" in md.read_text()
    rows = {(r["row"], r["col"]): r for r in read_csv(proj / "reports/tables/cots.csv")}
    assert (rows["cot5", "1"]["value"], rows["cot5", "1"]["std"], rows["cot5", "1"]["n"], rows["cot5", "1"]["seeds"]) \
        == ("45.00", "7.07", "2", "2")
    assert rows["cot5", "5"]["n"] == "0" and rows["cot5", "5"]["status"] == "missing"
    assert read_csv(proj / "reports/figures/cots.csv")[0]["cot5"] == "45.00"
    assert json.loads((proj / "metrics/headline.json").read_text()) \
        == {"cots": {"cot5/1": 45.0, "cot5/3": 30.0, "cot5/5": None, **{f"cot5_se/{k}": None for k in (1, 3, 5)}}}
    assert (proj / "reports/figures/cots.png").read_bytes().startswith(PNG)


def test_a_table_of_run_metrics(proj, params, logged):
    t = TableSpec(title="Protocols", rows="method", values={"method": ["cot5_se", "cot5"]},
                  fixed={"dataset": "svamp", "student": "base"}, omit=[{"method": "cot5"}],
                  metric=["accuracy", "paper_protocol_accuracy", "verdict_agreement"])
    params = params.model_copy(update={"tables": {"protocols": t}})
    [r] = cell_runs(params, "protocols", "cot5_se")
    write_eval(r, 0.5, paper=0.55, agreement=None)

    report.run(params)

    md = proj / "reports/tables/protocols.md"
    assert md_row(md, "cot5_se") == ["50.00", "55.00", "n/a"] and md_row(md, "cot5") == ["-", "-", "-"]
    assert "official code's best-on-test protocol" in md.read_text() and "optimistic" in md.read_text()
    assert json.loads((proj / "metrics/headline.json").read_text()) == {
        "protocols": {"cot5_se/accuracy": 50.0, "cot5_se/paper_protocol_accuracy": 55.0,
                      "cot5_se/verdict_agreement": None}}


def test_nothing_evaluated_yet(proj, params, logged, capsys):
    out = report.run(params)  # no metrics, no reference file
    assert all(p.exists() for p in out) and capsys.readouterr().err == ""
    assert md_row(proj / "reports/tables/labels.md", "cot1") == ["n/a", "n/a"]
    assert "values\n\nnone\n" in (proj / "reports/tables/README.md").read_text()
    assert logged[0]["synced"] == [] and logged[0]["ids"] == {}
    assert json.loads((proj / "metrics/mlflow_runs.json").read_text()) == {}


def test_a_reference_file_in_another_format_is_ignored(proj, params, logged, capsys):
    report.REPORTS.mkdir()
    report.REFERENCE.write_text("source,method,svamp\nx,standard_ft,62.63\n")
    report.run(params)
    assert "reference values ignored" in capsys.readouterr().err
    report.REFERENCE.write_text("table,row,col,value,source\n"
                                "main,standard_ft,svamp,lots,x\nmain,cot5,svamp,,to fill in\n")
    report.run(params)
    assert "reports/reference.csv:2: value 'lots' is not a number" in capsys.readouterr().err
    assert md_row(proj / "reports/tables/main.md", "standard_ft")[0] == "n/a"


def test_the_committed_reference_values():
    rows = read_csv(ROOT / "reports" / "reference.csv")
    assert rows and list(rows[0]) == ["table", "row", "col", "value", "source"]
    got = {(r["table"], r["row"], r["col"]): float(r["value"]) for r in rows}
    assert got[("teachers", "palm", "svamp_dss teacher_accuracy")] == 74.0
    assert got[("main", "standard_ft", "svamp")] == 62.63
    assert all(r["source"] for r in rows)


def test_the_runs_and_the_report_run_in_mlflow(proj, params, monkeypatch):
    """The real ``sync_runs`` and ``log_report``, their store (and artifacts: the project root) in the
    temporary directory: the evaluated run is logged once, however often the report runs."""
    from pipeline.core import paths

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{proj / 'mlflow.db'}")
    monkeypatch.setenv("DVC_ROOT", str(proj))
    monkeypatch.setenv("DVC_STAGE", "report")
    paths.project_root.cache_clear()
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking.tracking_uri())
        ft = cell_runs(params, "main", "standard_ft", "svamp")[0]
        write_eval(ft, 0.5)
        out = report.run(params)
        assert all(p.exists() for p in out)
        ids = json.loads((proj / "metrics/mlflow_runs.json").read_text())
        assert list(ids) == [ft.name]
        exp = client.get_experiment_by_name(tracking.EXPERIMENT).experiment_id
        parent = client.get_run(ids[ft.name])
        assert parent.info.run_name == ft.name and parent.data.tags[tracking.FINGERPRINT]
        assert parent.data.tags["dvc_stage"] == f"evaluate@{ft.name}" and parent.data.tags["logged_by"] == "report"
        assert parent.data.tags["mlflow.project.entryPoint"] == f"evaluate@{ft.name}"
        assert any(k.startswith("table.") for k in parent.data.tags)
        [rep] = [r for r in client.search_runs([exp]) if r.info.run_name == "report"]
        logged = {f.path for d in ("tables", "figures", "metrics") for f in client.list_artifacts(rep.info.run_id, d)}
        assert {"tables/main.md", "tables/README.md", "figures/cots.png", "figures/cots.csv",
                "metrics/mlflow_runs.json"} <= logged

        report.run(params)  # the same files: no new run of ft, one more report run
        assert json.loads((proj / "metrics/mlflow_runs.json").read_text()) == ids
        names = sorted(r.info.run_name for r in client.search_runs([exp]))
        assert names == sorted([ft.name, f"{ft.name}/stage2", "report", "report"])
    finally:
        paths.project_root.cache_clear()
