"""MLflow: the one place that knows the store, run names, tags and dataset inputs.

The default store is a SQLite file at the project root (``mlflow.db``; artifacts in ``mlruns/`` beside
it), absolute so that DVC's temporary experiment copies log to the same place; ``MLFLOW_TRACKING_URI``
overrides it (a SQLite store named there keeps its artifacts in ``mlruns/`` beside its file). Secrets
never reach MLflow: only params.yaml values, metrics and the stages' own files are logged.

What a run of the pipeline leaves in the ``mindsmirror`` experiment:

- ``log_run`` (end of ``evaluate@<run>``): a parent run named after the run
  (``svamp-cot5_se-base-teacher-k5-m5-s42``) spanning training and evaluation (start = the first
  training stage's start, end = the evaluation's end), with the run's params, final metrics, tags
  (its dimensions, the tables it serves as ``table.<name>``, DVC's stage and experiment), the git
  commit as the MLflow source, the training and test data as dataset inputs whose digest is DVC's
  hash, and one child run per training stage (``<run>/stage1``, ``<run>/stage2``) with its own
  timing, per-step curves and summary;
- ``log_report`` (end of ``report``): a run named ``report`` with the tables and figures, which also
  refreshes the ``table.<name>`` tags of the runs (tables change without the runs re-running).

The git commit logged is the one checked out when the run is *logged*; a training stage restored
from DVC's cache may have run at an earlier commit (its code is pinned by dvc.lock, not by MLflow).
"""
from __future__ import annotations

import getpass
import hashlib
import json
import os
import subprocess
import time
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Optional
from urllib.parse import urlsplit, urlunsplit

from .paths import ASSEMBLED, PREPARED, git_commit, project_root
from .records import EvalMetrics, Example, TrainingLog, TrainRow
from .runs import Run, tables_of
from .spec import Params

EXPERIMENT = "mindsmirror"
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"  # the UI opens the runs, not GenAI traces
LOCK = Path("dvc.lock")
SECRET_KEYS = {"api_key", "apikey", "token", "secret", "password", "authorization"}
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100  # MLflow's log_batch limits
STEP_KEYS = ("loss", "pred_loss", "expl_loss", "lr")
EVAL_KEYS = ("valid_accuracy", "test_accuracy")
ROW_COUNT_LIMIT = 256 * 2**20  # count the rows of data folders up to this size


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def flatten(d: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(d, list) and any(isinstance(v, (dict, list)) for v in d):
        for i, v in enumerate(d):
            out.update(flatten(v, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = str(d)[:6000]
    return out


# --------------------------------------------------------------------------- store and experiment
def _client():
    warnings.filterwarnings("ignore", module="sqlalchemy")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri())


def _sqlite_file(uri: str) -> Optional[Path]:
    """The database file of a ``sqlite:///`` URI (``sqlite:////abs`` absolute, ``sqlite:///rel`` relative)."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(rest).resolve() if rest and rest != ":memory:" else None


def _experiment_id(client) -> str:
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        if KIND_TAG not in exp.tags:
            client.set_experiment_tag(exp.experiment_id, KIND_TAG, KIND)
        return exp.experiment_id
    db = _sqlite_file(tracking_uri())
    # artifacts beside the database (the project root by default), never relative to a DVC temp copy
    art = (db.parent / "mlruns").as_uri() if db is not None else None
    return client.create_experiment(EXPERIMENT, artifact_location=art, tags={KIND_TAG: KIND})


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


# --------------------------------------------------------------------------- source (git, DVC, user)
def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                              cwd=project_root()).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return url


@lru_cache(maxsize=1)
def _repo() -> tuple[str, str]:
    """(remote URL without credentials, branch); empty when unknown."""
    branch = _git("rev-parse", "--abbrev-ref", "HEAD")
    return _without_credentials(_git("config", "--get", "remote.origin.url")), "" if branch == "HEAD" else branch


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return ""


def _source_tags(entry_point: str) -> dict[str, str]:
    """Tags the MLflow UI reads for its Source and Version columns and the run page.

    With ``mlflow.source.type`` PROJECT the UI shows ``<basename of source.name>:<entry point>``
    (extension dropped: a name like ``dvc.yaml:evaluate@x`` would show as ``dvc``), and the first
    characters of ``mlflow.source.git.commit`` as the version (a link when the name is a GitHub,
    GitLab or Bitbucket URL). So the name is the repository (remote URL, else the project folder)
    and the entry point the DVC stage: ``main:evaluate@svamp-cot5_se-base-teacher-k5-m5-s42``."""
    remote, branch = _repo()
    tags = {
        "mlflow.source.type": "PROJECT",
        "mlflow.source.name": remote or str(project_root()),
        "mlflow.project.entryPoint": entry_point,
        "mlflow.source.git.commit": git_commit(),
        "mlflow.source.git.repoURL": remote,
        "mlflow.source.git.branch": branch,
        "mlflow.user": _user(),
        "git_commit": git_commit(),
    }
    return tags


def _dvc_env_tags() -> dict[str, str]:
    return {"dvc_stage": os.environ.get("DVC_STAGE", ""), "dvc_exp_name": os.environ.get("DVC_EXP_NAME", ""),
            "dvc_exp_baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", "")}


def _table_tags(tables: Iterable[str]) -> dict[str, str]:
    tables = list(tables)
    return {"tables": ",".join(tables), **{f"table.{t}": "yes" for t in tables}}


def _clean(tags: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in tags.items() if v is not None and str(v) != ""}


# --------------------------------------------------------------------------- data: DVC hashes
def _read_lock() -> dict:
    if not LOCK.is_file():
        return {}
    try:
        from ruamel.yaml import YAML

        return YAML(typ="safe").load(LOCK.read_text(encoding="utf-8")) or {}
    except Exception:  # an unreadable lock is a missing lock here: the content hash stands in
        return {}


def _lock_out(lock: dict, stage: str, path: str) -> Optional[dict]:
    st = (lock.get("stages") or {}).get(stage) or {}
    for out in st.get("outs") or []:
        if isinstance(out, dict) and str(out.get("path", "")).rstrip("/") == path and out.get("md5"):
            return out
    return None


def _files(p: Path) -> list[Path]:
    if p.is_file():
        return [p]
    return sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else []


def content_md5(p: Path) -> str:
    """md5 over the sorted relative paths and bytes of the files under ``p`` (a stand-in for DVC's hash)."""
    h = hashlib.md5()
    base = p if p.is_dir() else p.parent
    for f in _files(p):
        h.update(f.relative_to(base).as_posix().encode() + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def _row_counts(p: Path) -> dict[str, int]:
    files = [f for f in _files(p) if f.suffix == ".jsonl"]
    if sum(f.stat().st_size for f in files) > ROW_COUNT_LIMIT:
        return {}
    out = {}
    for f in files:
        with f.open("rb") as fh:
            out[f"{f.relative_to(p).as_posix() if p.is_dir() else f.name} rows"] = sum(1 for line in fh if line.strip())
    return out


def _colspec(model) -> str:
    """An MLflow column spec (what the UI's dataset drawer shows as the schema) of a records model."""
    schema = model.model_json_schema()
    cols = []
    for name, f in schema.get("properties", {}).items():
        options = f.get("anyOf", [f])
        types = [o.get("type") for o in options if o.get("type") not in (None, "null")]
        t = types[0] if types else "string"
        col: dict[str, Any] = {"name": name,
                               "type": {"integer": "long", "number": "double", "boolean": "boolean",
                                        "array": "array"}.get(t, "string"),
                               "required": name in schema.get("required", []) and len(options) == len(types)}
        if t == "array":
            col["items"] = {"type": "string"}
        cols.append(col)
    return json.dumps({"mlflow_colspec": cols})


class _Data:
    """One DVC output used as an MLflow dataset input: its hash from dvc.lock, else a content md5."""

    def __init__(self, lock: dict, name: str, path: Path, stage: str, model) -> None:
        self.name, self.path, self.stage, self.model = name, path, stage, model
        out = _lock_out(lock, stage, path.as_posix())
        self.from_lock = out is not None
        if out is not None:
            self.digest = str(out["md5"])
            self.digest_from = f"dvc.lock:{stage}"
            self.profile: dict[str, Any] = {k: out[k] for k in ("nfiles", "size") if k in out}
        elif path.exists():
            self.digest = content_md5(path)
            self.digest_from = f"content md5 (no {stage} out in dvc.lock: stage run by hand?)"
            fs = _files(path)
            self.profile = {"nfiles": len(fs), "size": sum(f.stat().st_size for f in fs)}
        else:
            self.digest = "missing"
            self.digest_from = f"missing ({path} absent and no {stage} out in dvc.lock)"
            self.profile = {}
        self.profile.update(_row_counts(path) if path.exists() else {})

    def dataset(self):
        from mlflow.entities import Dataset

        source = {"uri": str(project_root() / self.path), "path": self.path.as_posix(), "dvc_stage": self.stage,
                  "digest_from": self.digest_from}
        return Dataset(name=self.name, digest=self.digest[:36], source_type="local", source=json.dumps(source),
                       schema=_colspec(self.model), profile=json.dumps(self.profile))

    def input(self, context: str):
        from mlflow.entities import DatasetInput, InputTag

        return DatasetInput(self.dataset(), tags=[InputTag("mlflow.data.context", context)])


def _run_data(run: Run) -> tuple[_Data, _Data]:
    """(training rows, test data) of a run, as the DVC outputs they are."""
    lock = _read_lock()
    a = run.assembly.name
    train = _Data(lock, f"{a} (train)", ASSEMBLED / a, f"assemble@{a}", TrainRow)
    test = _Data(lock, f"{run.dataset} (prepared)", PREPARED / run.dataset, f"prepare@{run.dataset}", Example)
    return train, test


# --------------------------------------------------------------------------- batching
def _log_batch(client, run_id: str, metrics=(), params=(), tags=()) -> None:
    metrics, params, tags = list(metrics), list(params), list(tags)
    for i in range(0, len(params), MAX_PARAMS):
        client.log_batch(run_id, params=params[i:i + MAX_PARAMS])
    for i in range(0, len(tags), MAX_TAGS):
        client.log_batch(run_id, tags=tags[i:i + MAX_TAGS])
    for i in range(0, len(metrics), MAX_METRICS):
        client.log_batch(run_id, metrics=metrics[i:i + MAX_METRICS])


def _params(flat: dict[str, str]):
    from mlflow.entities import Param

    return [Param(k, v) for k, v in flat.items() if k.rsplit(".", 1)[-1].lower() not in SECRET_KEYS]


# --------------------------------------------------------------------------- one run: train + evaluate
def run_params(params: Params, run: Run) -> dict[str, str]:
    """The flattened params of one run: its dimensions and the spec sections its stages read."""
    p = params.model_dump(mode="json")
    return flatten({
        "seed": run.seed, "profile": params.profile, "dataset": run.dataset, "method": run.method,
        "student": run.student, "labels": run.labels, "cots": run.cots, "self_evals": run.self_evals,
        "assembly": run.assembly.name,
        "datasets": {run.dataset: p["datasets"][run.dataset]}, "methods": {run.method: p["methods"][run.method]},
        "students": {run.student: p["students"][run.student]},
        "assemble": p["assemble"], "train": p["train"], "evaluate": p["evaluate"],
    })


def _dims_tags(params: Params, run: Run) -> dict[str, str]:
    return {"run": run.name, "dataset": run.dataset, "method": run.method, "student": run.student,
            "labels": run.labels, "cots": str(run.cots), "self_evals": str(run.self_evals), "seed": str(run.seed),
            "assembly": run.assembly.name, "profile": params.profile}


def _stage_metrics(log: TrainingLog):
    """Per-step curves (steps spread evenly between the stage's start and end) and the summary."""
    from mlflow.entities import Metric

    start, end = _ms(log.started_at), _ms(log.finished_at)
    last = max([log.steps, 1] + [h.step for h in log.history] + [e.step for e in log.evals])
    at = lambda step: start + (end - start) * min(step, last) // last  # noqa: E731
    out = []
    for h in log.history:
        out += [Metric(k, float(getattr(h, k)), at(h.step), h.step) for k in STEP_KEYS if getattr(h, k) is not None]
        out.append(Metric("epoch", float(h.epoch), at(h.step), h.step))
    for e in log.evals:
        out += [Metric(k, float(getattr(e, k)), at(e.step), e.step) for k in EVAL_KEYS if getattr(e, k) is not None]
    summary = {
        "steps": log.steps, "seconds": log.seconds, "examples_per_s": log.examples_per_s, "rows": log.rows,
        "epochs": log.epochs, "parameters": log.parameters, "resumed_from_step": log.resumed_from_step,
        "verdict_agreement": log.verdict_agreement, "verdict_rows": log.verdict_rows if log.stage == "stage1" else None,
        "final_loss": log.history[-1].loss if log.history else None,
        "selected_step": log.selected.step if log.selected else None,
        "selected_valid_accuracy": log.selected.valid_accuracy if log.selected else None,
        "paper_protocol_step": log.paper_protocol_best.step if log.paper_protocol_best else None,
        "paper_protocol_test_accuracy": log.paper_protocol_best.test_accuracy if log.paper_protocol_best else None,
    }
    out += [Metric(k, float(v), end, log.steps) for k, v in summary.items() if v is not None]
    return out


def _final_metrics(metrics: EvalMetrics):
    from mlflow.entities import Metric

    values = {
        "accuracy": metrics.accuracy, "valid_accuracy": metrics.valid_accuracy,
        "paper_protocol_accuracy": metrics.paper_protocol_accuracy,
        "stage1_verdict_agreement": metrics.stage1_verdict_agreement,
        "test_correct": metrics.correct, "test_total": metrics.total,
        "selected_step": metrics.selected_step, "paper_protocol_step": metrics.paper_protocol_step,
        "eval_seconds": round(metrics.finished_at - metrics.started_at, 3),
    }
    t = _ms(metrics.finished_at)
    return [Metric(k, float(v), t, 0) for k, v in values.items() if v is not None]


def _note(run: Run, tables: list[str], train: _Data, test: _Data) -> str:
    return "\n".join([
        f"**{run.name}**: {run.method} on {run.dataset}, T5 {run.student}, {run.labels} labels, "
        f"{run.cots} CoTs x {run.self_evals} self-evaluations, seed {run.seed}.",
        "",
        f"Tables: {', '.join(tables) or '(none)'}. Child runs: the training stages.",
        "",
        f"- training rows `{train.path.as_posix()}`: `{train.digest}` ({train.digest_from})",
        f"- test data `{test.path.as_posix()}`: `{test.digest}` ({test.digest_from})",
    ])


def log_run(params: Params, run: Run, metrics: EvalMetrics, logs: list[TrainingLog], artifacts: list[Path]) -> str:
    """One parent MLflow run per train+evaluate (training start to evaluation end) and one child run per
    training stage; returns the parent's id."""
    from mlflow.entities import Param

    client = _client()
    exp_id = _experiment_id(client)
    tables = tables_of(params).get(run.name, [])
    train, test = _run_data(run)
    env = _dvc_env_tags()
    entry = env["dvc_stage"] or f"evaluate@{run.name}"
    start = min([log.started_at for log in logs] + [metrics.started_at])
    data_tags = {"data.train.digest": train.digest, "data.train.digest_from": train.digest_from,
                 "data.test.digest": test.digest, "data.test.digest_from": test.digest_from}
    tags = _clean({**_dims_tags(params, run), **env, **_table_tags(tables), **_source_tags(entry), **data_tags,
                   "mlflow.runName": run.name, "mlflow.note.content": _note(run, tables, train, test)})
    parent = client.create_run(exp_id, start_time=_ms(start), tags=tags, run_name=run.name).info.run_id
    try:
        _log_batch(client, parent, metrics=_final_metrics(metrics), params=_params(run_params(params, run)))
        client.log_inputs(parent, datasets=[train.input("training"), test.input("evaluation")])
        for log in logs:
            child_tags = _clean({**_dims_tags(params, run), **_source_tags(f"{log.stage}@{run.name}"),
                                 "mlflow.runName": f"{run.name}/{log.stage}", "mlflow.parentRunId": parent,
                                 "stage": log.stage, "dvc_stage": f"{log.stage}@{run.name}",
                                 "logged_by": entry, "dvc_exp_name": env["dvc_exp_name"],
                                 "data.train.digest": train.digest})
            child = client.create_run(exp_id, start_time=_ms(log.started_at), tags=child_tags,
                                      run_name=child_tags["mlflow.runName"]).info.run_id
            stage_params = {"stage": log.stage, "device": log.device, "precision": log.precision,
                            "forward": log.forward, "init": log.init, "world_size": log.world_size}
            _log_batch(client, child, metrics=_stage_metrics(log),
                       params=[Param(k, str(v)) for k, v in stage_params.items()])
            inputs = [train.input("training")] + ([test.input("validation")] if log.stage == "stage2" else [])
            client.log_inputs(child, datasets=inputs)
            client.set_terminated(child, "FINISHED", end_time=_ms(log.finished_at))
        for a in artifacts:
            if Path(a).is_file():
                client.log_artifact(parent, str(a))
    except BaseException:
        client.set_terminated(parent, "FAILED")
        raise
    client.set_terminated(parent, "FINISHED", end_time=_ms(max(metrics.finished_at, start)))
    return parent


# --------------------------------------------------------------------------- the report
def _artifact_dir(p: Path) -> Optional[str]:
    """The folder under reports/ a report file goes to in MLflow (tables/, figures/), else its parent's name."""
    for base in (Path.cwd() / "reports", Path("reports")):
        try:
            rel = p.relative_to(base)
        except ValueError:
            continue
        parent = rel.parent.as_posix()
        return None if parent == "." else parent
    name = p.parent.name
    return None if name in ("", "reports") or p.parent.resolve() == Path.cwd().resolve() else name


def _retag_tables(client, run_id: str, tables: list[str]) -> None:
    """Set a run's ``tables``/``table.<name>`` tags to ``tables``, deleting the stale ones."""
    from mlflow.entities import RunTag

    current = client.get_run(run_id).data.tags
    want = _table_tags(tables)
    for k in current:
        if (k.startswith("table.") or k == "tables") and not want.get(k):
            client.delete_tag(run_id, k)
    _log_batch(client, run_id, tags=[RunTag(k, v) for k, v in want.items() if v and current.get(k) != v])


def log_report(params: Params, artifacts: list[Path], run_tables: dict[str, list[str]],
               mlflow_run_ids: dict[str, str], started_at: Optional[float] = None) -> str:
    """One MLflow run ``report`` with every report file (kept in its folder: tables/, figures/), and the
    ``table.<name>`` tags of the logged runs brought up to date; returns the report run's id. Runs whose id
    is no longer in the store are skipped."""
    from mlflow.exceptions import MlflowException

    started = started_at if started_at is not None else time.time()
    client = _client()
    exp_id = _experiment_id(client)
    env = _dvc_env_tags()
    linked, missing = {}, []
    for name, rid in mlflow_run_ids.items():
        try:
            _retag_tables(client, rid, list(run_tables.get(name, [])))
            linked[name] = rid
        except MlflowException:
            missing.append(name)
    lines = [f"The tables and figures of profile **{params.profile}** ({len(params.tables)} tables).", ""]
    lines += [f"- [{n}](#/experiments/{exp_id}/runs/{rid}): {', '.join(run_tables.get(n, [])) or '(no table)'}"
              for n, rid in sorted(linked.items())]
    if missing:
        lines += ["", f"Not in this store: {', '.join(sorted(missing))}."]
    tags = _clean({"profile": params.profile, "seed": str(params.seed), **env,
                   **_source_tags(env["dvc_stage"] or "report"), "tables": ",".join(params.tables),
                   "mlflow.runName": "report", "mlflow.note.content": "\n".join(lines)[:5000]})
    rid = client.create_run(exp_id, start_time=_ms(started), tags=tags, run_name="report").info.run_id
    try:
        from mlflow.entities import Metric

        p = params.model_dump(mode="json")
        _log_batch(client, rid, params=_params(flatten({"profile": params.profile, "seed": params.seed,
                                                          "tables": p["tables"]})),
                   metrics=[Metric("runs_linked", float(len(linked)), _ms(time.time()), 0),
                            Metric("runs_missing", float(len(missing)), _ms(time.time()), 0)])
        for a in artifacts:
            a = Path(a)
            if a.is_file():
                client.log_artifact(rid, str(a), artifact_path=_artifact_dir(a))
    except BaseException:
        client.set_terminated(rid, "FAILED")
        raise
    client.set_terminated(rid, "FINISHED", end_time=_ms(time.time()))
    return rid
