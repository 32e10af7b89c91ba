"""MLflow tracking (pipeline/tracking/) against a SQLite store in a temporary directory: no dvc, no
training. A run's parent MLflow run spans its evaluation, its training stages are child runs spanning
themselves with their curves, metrics are in percent like the tables, its data are dataset inputs
digested by dvc.lock's hashes; inside ``dvc exp run`` names, tags and source say which experiment;
``sync_runs`` logs each run once per content of its metrics files (and refreshes the table tags of
those logged already); the report run refreshes the runs' table tags; the experiment has its kind, a
description and a saved runs-table view."""
from __future__ import annotations

import dataclasses

import json
import time

import pytest

from pipeline import tracking
from pipeline.core.paths import git_commit
from pipeline.core.artifacts import write_model
from pipeline.core.records import EvalMetrics, SelectionPoint, TrainingLog, TrainStep
from pipeline.runs import derive, tables_of
from pipeline.core.spec import load_params
from support import ROOT

NOW = time.time()
TRAIN_MD5, TEST_MD5 = "0123456789abcdef0123456789abcdef.dir", "fedcba9876543210fedcba9876543210.dir"


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "profiles" / "offline.yaml")


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory):
    """An MLflow SQLite store created once (its schema migrations take seconds); each test copies it."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def store(tmp_path, monkeypatch, empty_db):
    """A project-like temporary cwd with its own MLflow store; the DVC variables of `dvc exp run`."""
    import shutil

    shutil.copy(empty_db, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    for k in ("DVC_STAGE", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        monkeypatch.delenv(k, raising=False)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")


def pick(params, two_stage: bool):
    """A run of the offline profile that serves several tables (two-stage or not)."""
    served = tables_of(params)
    return next(r for r in derive(params).values() if r.two_stage == two_stage and len(served[r.name]) > 1)


def training_log(run, stage: str, started: float, finished: float, steps: int = 8) -> TrainingLog:
    history = [TrainStep(step=s, epoch=s / steps * 2, loss=2.0 / s, pred_loss=1.5 / s,
                         expl_loss=None if stage == "stage1" else 2.5 / s, lr=1e-3, examples=16)
               for s in range(1, steps + 1)]
    evals = [SelectionPoint(step=s, epoch=s / steps * 2, valid_accuracy=0.1 * i, test_accuracy=0.05 * i)
             for i, s in enumerate((steps // 2, steps), start=1)]
    return TrainingLog(
        run=run.name, dataset=run.dataset, teacher=run.teacher, method=run.method, student=run.student, labels=run.labels,
        cots=run.cots, self_evals=run.self_evals, seed=run.seed, stage=stage, device="cpu", precision="fp32",
        forward="separate", parameters=12345, init="base" if stage == "stage1" else f"models/{run.name}/stage1",
        world_size=1, rows=128, epochs=2.0, steps=steps, seconds=finished - started - 1, started_at=started,
        finished_at=finished, examples_per_s=40.0, resumed_from_step=0,
        verdict_agreement=0.75 if stage == "stage1" else None, verdict_rows=20 if stage == "stage1" else 0,
        selected=evals[-1], paper_protocol_best=evals[-1], history=history, evals=evals)


def eval_metrics(run, started: float, finished: float) -> EvalMetrics:
    return EvalMetrics(run=run.name, dataset=run.dataset, teacher=run.teacher, method=run.method, student=run.student, labels=run.labels,
                       cots=run.cots, self_evals=run.self_evals, seed=run.seed, split="test", accuracy=0.25,
                       correct=50, total=200, started_at=started, finished_at=finished)


def write_data(run) -> None:
    """Small stand-ins for the run's DVC outputs (their content only matters without dvc.lock)."""
    from pathlib import Path

    a = Path("data/assembled") / run.assembly.name
    a.mkdir(parents=True)
    (a / "stage2.jsonl").write_text('{"id": "1"}\n{"id": "2"}\n{"id": "3"}\n')
    p = Path("data/prepared") / run.dataset
    p.mkdir(parents=True)
    (p / "test.jsonl").write_text('{"id": "t1"}\n')


def write_lock(run) -> None:
    from pathlib import Path

    a, ds = run.assembly.name, run.dataset
    Path("dvc.lock").write_text(
        "schema: '2.0'\nstages:\n"
        f"  prepare@{ds}:\n    cmd: python -m pipeline prepare --dataset {ds}\n    outs:\n"
        f"    - path: data/prepared/{ds}\n      hash: md5\n      md5: {TEST_MD5}\n      size: 13\n      nfiles: 1\n"
        f"  assemble@{a}:\n    cmd: python -m pipeline assemble --assembly {a}\n    outs:\n"
        f"    - path: data/assembled/{a}\n      hash: md5\n      md5: {TRAIN_MD5}\n      size: 36\n      nfiles: 1\n"
        f"    - path: metrics/assemble/{a}.json\n      hash: md5\n      md5: 00000000000000000000000000000000\n")


def inputs(run_info) -> dict[str, tuple[str, str]]:
    """context -> (dataset name, digest) of a run's dataset inputs."""
    out = {}
    for di in run_info.inputs.dataset_inputs:
        ctx = {t.key: t.value for t in di.tags}["mlflow.data.context"]
        out[ctx] = (di.dataset.name, di.dataset.digest)
    return out


def test_a_two_stage_run_is_a_parent_with_its_training_stages_as_children(params, store, tmp_path, monkeypatch):
    run = pick(params, two_stage=True)
    monkeypatch.setenv("DVC_STAGE", "report")  # the stage that logs; the run is evaluate@<run>'s outputs
    write_data(run)
    write_lock(run)
    s1 = training_log(run, "stage1", NOW - 100, NOW - 60)
    s2 = training_log(run, "stage2", NOW - 59, NOW - 20)
    metrics = eval_metrics(run, NOW - 19, NOW - 2)
    metrics_file = tmp_path / "metrics.json"
    metrics_file.write_text(metrics.model_dump_json())

    rid = tracking.log_run(params, run, metrics, [s1, s2], [metrics_file], tables_of(params)[run.name])

    parent = store.get_run(rid)
    info, tags = parent.info, parent.data.tags
    assert info.run_name == run.name == tags["mlflow.runName"] and info.status == "FINISHED"
    # Duration in the UI: the evaluation's own span (not the first training stage's start: DVC runs other
    # runs' stages in between); the seconds of the run's own stages are metrics
    assert abs(info.start_time - metrics.started_at * 1000) <= 1 and abs(info.end_time - metrics.finished_at * 1000) <= 1
    assert abs((info.end_time - info.start_time) - 17_000) <= 2
    ms = parent.data.metrics
    assert (ms["stage1_seconds"], ms["stage2_seconds"], ms["train_seconds"]) == (40.0, 39.0, 79.0)
    assert (ms["eval_seconds"], ms["total_seconds"]) == (17.0, 96.0)

    # params, final metrics, tags, source
    ps, ms = parent.data.params, parent.data.metrics
    assert ps["seed"] == str(run.seed) and ps["profile"] == "offline" and ps["method"] == run.method
    assert float(ps["train.lr"]) == params.train.lr and ps[f"methods.{run.method}.cots"] == str(run.cots)
    assert f"datasets.{run.dataset}.task" in ps and f"students.{run.student}.from_config" in ps
    assert not any(k.startswith(("datasets.cqa", "tables.")) for k in ps if run.dataset != "cqa")
    # in percent, as the tables show them (0.1 is exactly 10.0: no float noise); counts stay counts
    assert ms["accuracy_pct"] == 25.0 and ms["test_correct"] == 50 and ms["test_total"] == 200
    assert ms["stage1_verdict_agreement_pct"] == 75.0 and ms["paper_protocol_accuracy_pct"] == 10.0
    assert ms["valid_accuracy_pct"] == 20.0 and ms["selected_step"] == 8
    assert not {"accuracy", "valid_accuracy", "paper_protocol_accuracy", "stage1_verdict_agreement"} & set(ms)
    assert {k: tags[k] for k in ("dataset", "method", "student", "labels", "cots", "self_evals", "seed")} == {
        "dataset": run.dataset, "method": run.method, "student": run.student, "labels": run.labels,
        "cots": str(run.cots), "self_evals": str(run.self_evals), "seed": str(run.seed)}
    assert tags["dvc_stage"] == f"evaluate@{run.name}" and tags["logged_by"] == "report"
    assert not {"dvc.exp_name", "dvc.baseline_rev", "dvc.exp_ref"} & set(tags)  # no experiment: no empty tags
    assert tags["mlflow.source.git.commit"] == git_commit() == tags["git_commit"]
    assert tags["mlflow.source.type"] == "PROJECT" and tags["mlflow.project.entryPoint"] == f"evaluate@{run.name}"
    assert tags["mlflow.source.name"]
    served = tables_of(params)[run.name]
    assert tags["tables"] == ",".join(served) and len(served) > 1
    assert {k[len("table."):] for k, v in tags.items() if k.startswith("table.") and v == "yes"} == set(served)
    assert [a.path for a in store.list_artifacts(rid)] == ["metrics.json"]

    # data: dvc.lock's hashes as digests, with their contexts
    got = inputs(parent)
    assert got == {"training": (f"{run.assembly.name} (train)", TRAIN_MD5),
                   "evaluation": (f"{run.dataset} (prepared)", TEST_MD5)}
    assert tags["data.train.digest_from"] == f"dvc.lock:assemble@{run.assembly.name}"
    train_ds = next(d.dataset for d in parent.inputs.dataset_inputs if d.dataset.digest == TRAIN_MD5)
    assert json.loads(train_ds.profile)["stage2.jsonl rows"] == 3
    assert json.loads(train_ds.source)["path"] == f"data/assembled/{run.assembly.name}"
    assert "mlflow_colspec" in json.loads(train_ds.schema)

    # children: one per training stage, with their own times, curves and summary
    children = store.search_runs([info.experiment_id], f"tags.mlflow.parentRunId = '{rid}'")
    by_name = {c.info.run_name: c for c in children}
    assert set(by_name) == {f"{run.name}/stage1", f"{run.name}/stage2"}
    for log in (s1, s2):
        c = by_name[f"{run.name}/{log.stage}"]
        assert c.info.status == "FINISHED" and c.data.tags["mlflow.parentRunId"] == rid
        assert abs(c.info.start_time - log.started_at * 1000) <= 1
        assert abs(c.info.end_time - log.finished_at * 1000) <= 1
        assert c.data.metrics["wall_seconds"] == round(log.finished_at - log.started_at, 3) == ms[f"{log.stage}_seconds"]
        loss = store.get_metric_history(c.info.run_id, "loss")
        assert [m.step for m in loss] == list(range(1, 9)) and loss[0].value == 2.0
        assert all(c.info.start_time <= m.timestamp <= c.info.end_time for m in loss)
        valid = store.get_metric_history(c.info.run_id, "valid_accuracy_pct")
        assert [(m.step, m.value) for m in valid] == [(4, 10.0), (8, 20.0)]
        assert [m.value for m in store.get_metric_history(c.info.run_id, "test_accuracy_pct")] == [5.0, 10.0]
        assert c.data.metrics["selected_valid_accuracy_pct"] == 20.0
        assert c.data.metrics["steps"] == 8 and c.data.metrics["examples_per_s"] == 40.0
        assert c.data.params["device"] == "cpu"
        assert inputs(c)["training"][1] == TRAIN_MD5
    assert by_name[f"{run.name}/stage1"].data.metrics["verdict_agreement_pct"] == 75.0
    # the parent's span is its evaluation's: it contains neither child's
    assert all(by_name[f"{run.name}/{x.stage}"].info.end_time <= info.start_time for x in (s1, s2))
    assert "expl_loss" not in by_name[f"{run.name}/stage1"].data.metrics
    assert len(store.get_metric_history(by_name[f"{run.name}/stage2"].info.run_id, "expl_loss")) == 8
    assert inputs(by_name[f"{run.name}/stage2"])["validation"][1] == TEST_MD5


def test_without_dvc_lock_the_digest_is_a_content_hash(params, store):
    run = pick(params, two_stage=False)
    write_data(run)
    s2 = training_log(run, "stage2", NOW - 50, NOW - 20)
    metrics = eval_metrics(run, NOW - 19, NOW - 10)

    rid = tracking.log_run(params, run, metrics, [s2], [], tables_of(params)[run.name])

    parent = store.get_run(rid)
    from pathlib import Path

    assert inputs(parent)["training"][1] == tracking.content_md5(Path("data/assembled") / run.assembly.name)
    assert parent.data.tags["data.train.digest_from"].startswith("content md5")
    assert "stage1_verdict_agreement_pct" not in parent.data.metrics and "stage1_seconds" not in parent.data.metrics
    assert parent.data.tags["mlflow.project.entryPoint"] == f"evaluate@{run.name}"  # run by hand
    assert abs((parent.info.end_time - parent.info.start_time) - 9_000) <= 2  # the evaluation
    assert parent.data.metrics["train_seconds"] == 30.0 and parent.data.metrics["total_seconds"] == 39.0
    children = store.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{rid}'")
    assert [c.info.run_name for c in children] == [f"{run.name}/stage2"]


def test_the_report_run_and_the_runs_table_tags(params, store, tmp_path):
    run = pick(params, two_stage=True)
    write_lock(run)
    logs = [training_log(run, "stage1", NOW - 40, NOW - 30), training_log(run, "stage2", NOW - 29, NOW - 11)]
    rid = tracking.log_run(params, run, eval_metrics(run, NOW - 10, NOW - 5), logs, [], tables_of(params)[run.name])
    served = tables_of(params)[run.name]
    assert store.get_run(rid).data.tags[f"table.{served[0]}"] == "yes"
    files = []
    for rel, text in (("reports/tables/main.md", "# main\n"), ("reports/tables/main.csv", "a,b\n1,2\n"),
                      ("reports/figures/cots.png", "\x89PNG"), ("metrics/headline.json", "{}\n")):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        files.append(p)
    # the tables changed since the run was logged: it now serves only one other table
    new_tables = {run.name: ["cots"]}

    report_id = tracking.log_report(params, files, new_tables, {run.name: rid, "gone": "0" * 32})

    report = store.get_run(report_id)
    assert report.info.run_name == "report" and report.info.status == "FINISHED"
    assert report.data.tags["tables"] == ",".join(params.tables) and report.data.tags["profile"] == "offline"
    assert report.data.tags["mlflow.source.git.commit"] == git_commit()
    assert report.info.end_time >= report.info.start_time
    assert sorted(a.path for a in store.list_artifacts(report_id)) == ["figures", "metrics", "tables"]
    assert sorted(a.path for a in store.list_artifacts(report_id, "tables")) == ["tables/main.csv", "tables/main.md"]
    assert [a.path for a in store.list_artifacts(report_id, "figures")] == ["figures/cots.png"]
    assert report.data.metrics["runs_linked"] == 1 and report.data.metrics["runs_missing"] == 1

    tags = store.get_run(rid).data.tags
    assert tags["tables"] == "cots" and tags["table.cots"] == "yes"
    assert not [k for k in tags if k.startswith("table.") and k != "table.cots"]

    # a run no table serves any more loses its table tags
    tracking.log_report(params, [], {}, {run.name: rid})
    tags = store.get_run(rid).data.tags
    assert "tables" not in tags and not [k for k in tags if k.startswith("table.")]


# --------------------------------------------------------------------------- inside `dvc exp run`
BASELINE = "ab" + "c" * 38  # a commit sha that is not HEAD


def test_inside_dvc_exp_run_names_tags_and_source_say_which_experiment(params, store, monkeypatch):
    """DVC sets DVC_EXP_NAME and DVC_EXP_BASELINE_REV in the stages of `dvc exp run`: the runs of two
    experiments (and of the baseline) differ in their names, tags and Source, not only in a hidden tag."""
    run = pick(params, two_stage=True)
    monkeypatch.setenv("DVC_STAGE", "report")
    monkeypatch.setenv("DVC_EXP_NAME", "lr2")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", BASELINE)
    assert git_commit() != BASELINE
    item = write_run_files(params, run, NOW)
    [rid] = tracking.sync_runs(params, [item]).values()

    parent = store.get_run(rid)
    tags = parent.data.tags
    assert parent.info.run_name == tags["mlflow.runName"] == f"[lr2] {run.name}"
    assert tags["run"] == run.name and tags["dvc_stage"] == f"evaluate@{run.name}"
    ref = f"refs/exps/ab/{'c' * 38}/lr2"  # where DVC keeps the experiment's commit
    assert (tags["dvc.exp_name"], tags["dvc.baseline_rev"], tags["dvc.exp_ref"]) == ("lr2", BASELINE, ref)
    # Source: the experiment before the stage, its baseline commit, its git ref as the branch
    assert tags["mlflow.project.entryPoint"] == f"lr2:evaluate@{run.name}"
    assert tags["mlflow.source.git.commit"] == BASELINE and tags["mlflow.source.git.branch"] == ref
    assert tags["git_commit"] == git_commit()  # what was checked out when it was logged
    assert "DVC experiment **lr2**" in tags["mlflow.note.content"]
    exp = parent.info.experiment_id
    children = store.search_runs([exp], f"tags.mlflow.parentRunId = '{rid}'")
    assert sorted(c.info.run_name for c in children) == [f"[lr2] {run.name}/stage1", f"[lr2] {run.name}/stage2"]
    for c in children:
        stage = c.data.tags["stage"]
        assert c.data.tags["dvc.exp_name"] == "lr2" and c.data.tags["mlflow.source.git.branch"] == ref
        assert c.data.tags["mlflow.project.entryPoint"] == f"lr2:{stage}@{run.name}"
    report = store.get_run(tracking.log_report(params, [], {run.name: list(item.tables)}, {run.name: rid}))
    assert report.info.run_name == "[lr2] report" and report.data.tags["dvc.exp_name"] == "lr2"

    # another experiment retrains the run (new files): a second parent, told apart by its name
    monkeypatch.setenv("DVC_EXP_NAME", "lr1")
    item1 = write_run_files(params, run, NOW + 1)
    [rid1] = tracking.sync_runs(params, [item1]).values()
    assert rid1 != rid and store.get_run(rid1).info.run_name == f"[lr1] {run.name}"

    # the same files outside any experiment (`dvc exp apply`, then `dvc repro`): found by their
    # fingerprint, the run keeps the name it was first logged with
    for k in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        monkeypatch.delenv(k)
    assert tracking.sync_runs(params, [item1]) == {run.name: rid1}
    assert store.get_run(rid1).info.run_name == f"[lr1] {run.name}"
    # and a new run outside: today's name, HEAD as its commit
    other = pick(params, two_stage=False)
    [rid2] = tracking.sync_runs(params, [write_run_files(params, other, NOW)]).values()
    t2 = store.get_run(rid2).data.tags
    assert t2["mlflow.runName"] == other.name and t2["mlflow.project.entryPoint"] == f"evaluate@{other.name}"
    assert t2["mlflow.source.git.commit"] == git_commit() and "dvc.exp_name" not in t2


def test_an_experiment_without_a_baseline_commit_falls_back_to_head(params, store, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "tidy-tern")
    run = pick(params, two_stage=False)
    [rid] = tracking.sync_runs(params, [write_run_files(params, run, NOW)]).values()
    tags = store.get_run(rid).data.tags
    assert tags["mlflow.runName"] == f"[tidy-tern] {run.name}" and tags["mlflow.source.git.commit"] == git_commit()
    assert "dvc.exp_ref" not in tags and "dvc.baseline_rev" not in tags


# --------------------------------------------------------------------------- the experiment itself
def test_the_experiment_opens_as_ml_with_a_description_and_a_saved_view(params, store):
    """What a logger can set so the UI shows the runs' metrics without opening Columns: the experiment's
    kind, a description whose first line links a saved view (columns: the DVC experiment, the percent
    metrics, the seconds), kept up to date without rewriting it, and a description someone wrote kept."""
    from pipeline.tracking import experiment as E

    run = pick(params, two_stage=True)
    [rid] = tracking.sync_runs(params, [write_run_files(params, run, NOW)]).values()
    exp = store.get_experiment_by_name(tracking.EXPERIMENT)
    tags = exp.tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    note = tags["mlflow.note.content"]
    url = f"#/experiments/{exp.experiment_id}/runs?viewStateShareKey=compare-runs&workflowType=machine_learning"
    assert tracking.runs_url(exp.experiment_id) == url and url in note.splitlines()[0]
    assert "`[<experiment>] <run>`" in note and "`_pct`" in note and "`total_seconds`" in note
    envelope = json.loads(tags["mlflow.sharedViewState.compare-runs"])
    assert envelope["name"] == E.VIEW_NAME and isinstance(envelope["createdAt"], int)
    state = json.loads(envelope["state"])
    assert state["selectedColumns"][0] == "tags.`dvc.exp_name`" and "attributes.`Source`" in state["selectedColumns"]
    assert state["columnWidths"]["attributes.`Run Name`"] >= 400
    assert state["columnOrder"][:2] == ["attributes.`Run Name`", "runDateAndNestInfo"]
    assert set(state["selectedColumns"]) <= set(state["columnOrder"])
    # every metric column of the view is a metric the parents have (a renamed metric would be a blank column)
    shown = {c[len("metrics.`"):-1] for c in state["selectedColumns"] if c.startswith("metrics.")}
    assert shown == set(E.METRIC_COLUMNS) and shown <= set(store.get_run(rid).data.metrics)

    # up to date: logging again rewrites nothing (the view keeps its times)
    tracking.sync_runs(params, [write_run_files(params, run, NOW + 1)])
    assert store.get_experiment(exp.experiment_id).tags["mlflow.sharedViewState.compare-runs"] == \
        tags["mlflow.sharedViewState.compare-runs"]
    # an experiment that lost its kind gets it back; a description someone wrote stays
    store.delete_experiment_tag(exp.experiment_id, "mlflow.experimentKind")
    store.set_experiment_tag(exp.experiment_id, "mlflow.note.content", "my notes")
    tracking.sync_runs(params, [write_run_files(params, run, NOW + 2)])
    again = store.get_experiment(exp.experiment_id).tags
    assert again["mlflow.experimentKind"] == "custom_model_development" and again["mlflow.note.content"] == "my notes"


# --------------------------------------------------------------------------- sync_runs: each run once
def write_run_files(params, run, evaluated: float) -> "tracking.RunFiles":
    """A run's metrics files as its stages write them (evaluation ending at ``evaluated``), read back."""
    from pathlib import Path

    stages = (["stage1"] if run.two_stage else []) + ["stage2"]
    logs = [training_log(run, st, evaluated - 100 + 40 * i, evaluated - 61 + 40 * i)
            for i, st in enumerate(stages)]
    files = [Path(f"metrics/evaluate/{run.name}.json")]
    files += [Path(f"metrics/train/{run.name}/{st}.json") for st in stages]
    metrics = eval_metrics(run, evaluated - 10, evaluated)
    for f, m in zip(files, [metrics] + logs):
        write_model(f, m)
    return tracking.RunFiles(run, metrics, tuple(logs), tuple(files), tuple(tables_of(params)[run.name]))


def parents(store, exp_name=tracking.EXPERIMENT) -> dict[str, list]:
    """run name -> its parent MLflow runs."""
    exp = store.get_experiment_by_name(exp_name).experiment_id
    out: dict[str, list] = {}
    for r in store.search_runs([exp], "tags.fingerprint IS NOT NULL", max_results=1000):
        out.setdefault(r.info.run_name, []).append(r)
    return out


def test_sync_runs_logs_each_run_once_per_content_of_its_files(params, store, monkeypatch):
    from pipeline.tracking import sync

    monkeypatch.setattr(sync, "PAGE", 2)  # the lookup pages through the store
    monkeypatch.setenv("DVC_STAGE", "report")
    runs = list(derive(params).values())
    chosen = [next(r for r in runs if r.two_stage), *[r for r in runs if not r.two_stage][:3]]
    items = [write_run_files(params, r, NOW - 5 * i) for i, r in enumerate(chosen)]

    ids = tracking.sync_runs(params, items)

    assert list(ids) == [r.name for r in chosen]
    logged = parents(store)
    assert {n: [p.info.run_id for p in ps] for n, ps in logged.items()} == {n: [i] for n, i in ids.items()}
    exp = store.get_experiment_by_name(tracking.EXPERIMENT).experiment_id
    for it in items:
        p = store.get_run(ids[it.run.name])
        tags = p.data.tags
        assert tags["fingerprint"] == tracking.fingerprint(it.files) and p.info.status == "FINISHED"
        assert tags["dvc_stage"] == tags["mlflow.project.entryPoint"] == f"evaluate@{it.run.name}"
        assert tags["logged_by"] == "report" and tags["tables"] == ",".join(tables_of(params)[it.run.name])
        assert abs(p.info.start_time - it.metrics.started_at * 1000) <= 1
        assert abs(p.info.end_time - it.metrics.finished_at * 1000) <= 1
        assert tags["log_format"] == tracking.LOG_FORMAT
        assert [a.path for a in store.list_artifacts(p.info.run_id)] == [f"{it.run.name}.json"]
        children = store.search_runs([exp], f"tags.mlflow.parentRunId = '{p.info.run_id}'")
        assert sorted(c.info.run_name for c in children) == [f"{it.run.name}/{x.stage}" for x in it.logs]
        for c in children:
            log = next(x for x in it.logs if c.info.run_name.endswith(x.stage))
            assert abs(c.info.start_time - log.started_at * 1000) <= 1
            assert abs(c.info.end_time - log.finished_at * 1000) <= 1
            assert "fingerprint" not in c.data.tags
    total = len(store.search_runs([exp], max_results=1000))
    assert total == len(items) + sum(len(it.logs) for it in items)

    # the same files (a repro, a stage restored from the run-cache): nothing new, the same ids
    assert tracking.sync_runs(params, items) == ids
    assert len(store.search_runs([exp], max_results=1000)) == total

    # one run evaluated again: its new files are exactly one new parent (with its children)
    items[1] = write_run_files(params, chosen[1], NOW + 1)
    again = tracking.sync_runs(params, items)
    redone = chosen[1].name
    assert again[redone] != ids[redone]
    assert {n: i for n, i in again.items() if n != redone} == {n: i for n, i in ids.items() if n != redone}
    assert len(store.search_runs([exp], max_results=1000)) == total + 1 + len(items[1].logs)
    assert sorted(p.info.run_id for p in parents(store)[redone]) == sorted([ids[redone], again[redone]])


def test_sync_runs_refreshes_the_table_tags_of_runs_logged_already(params, store):
    run = pick(params, two_stage=False)
    served = tables_of(params)[run.name]
    item = write_run_files(params, run, NOW)
    [rid] = tracking.sync_runs(params, [item]).values()
    assert store.get_run(rid).data.tags["tables"] == ",".join(served) and len(served) > 1

    # the tables changed: the run now serves only the first of them
    fewer = params.model_copy(update={"tables": {served[0]: params.tables[served[0]]}})
    moved = dataclasses.replace(item, tables=tuple(tables_of(fewer)[run.name]))
    assert tracking.sync_runs(fewer, [moved]) == {run.name: rid}
    tags = store.get_run(rid).data.tags
    assert tags["tables"] == served[0] and tags[f"table.{served[0]}"] == "yes"
    assert [k for k in tags if k.startswith("table.")] == [f"table.{served[0]}"]
    assert len(parents(store)[run.name]) == 1


def test_a_parent_logged_by_an_earlier_logger_is_not_reused(params, store):
    """Metrics changed names and units (fractions -> ``*_pct``): a run logged before that is logged again."""
    run = pick(params, two_stage=False)
    item = write_run_files(params, run, NOW)
    [rid] = tracking.sync_runs(params, [item]).values()
    store.delete_tag(rid, "log_format")  # as an earlier version left it
    [again] = tracking.sync_runs(params, [item]).values()
    assert again != rid and "accuracy_pct" in store.get_run(again).data.metrics
    assert tracking.sync_runs(params, [item]) == {run.name: again}


def test_an_unfinished_parent_is_never_reused(params, store):
    """A report killed while logging a run leaves a parent without its fingerprint, or not FINISHED:
    the next sync logs the run again."""
    run = pick(params, two_stage=False)
    item = write_run_files(params, run, NOW)
    [rid] = tracking.sync_runs(params, [item]).values()
    store.set_terminated(rid, "KILLED")
    [again] = tracking.sync_runs(params, [item]).values()
    assert again != rid and store.get_run(again).data.tags["fingerprint"] == tracking.fingerprint(item.files)
