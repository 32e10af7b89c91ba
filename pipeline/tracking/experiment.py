"""The ``mindsmirror`` experiment's own tags: its kind, its description and a saved runs-table view.

What a logger can set in MLflow 3 (checked against the 3.17 UI's code): the runs table shows by default
Run Name, Created, Dataset, Duration, Source and Models, and no metric, param, tag or Description
column; columns are a per-browser choice, except in a *saved view*: an experiment tag
``mlflow.sharedViewState.<id>`` holding ``{name, createdAt, updatedAt, state}``, ``state`` being the
JSON of the table's search facets and UI state (``selectedColumns``, ``columnWidths``, ``orderByKey``,
...). The UI lists it under Views above the runs table and opens it at
``#/experiments/<id>/runs?viewStateShareKey=<id>``. The experiment's description is its
``mlflow.note.content`` tag (markdown), which links that view. ``mlflow.experimentKind`` =
``custom_model_development`` is the kind MLflow's own code reads; the open-source UI chooses GenAI or
ML from the browser instead (the ``workflowType`` URL parameter, then its local storage, GenAI by
default), so the links here carry ``workflowType=machine_learning``.
"""
from __future__ import annotations

import json
import time

KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
NOTE_TAG = "mlflow.note.content"
VIEW_TAG = "mlflow.sharedViewState."
VIEW_ID = "compare-runs"
VIEW_NAME = "Compare runs: accuracy (%), seconds, DVC experiment"
RUN_NAME_WIDTH = 420  # px: the default (about 17 characters) cuts the run names

METRIC_COLUMNS = ("accuracy_pct", "paper_protocol_accuracy_pct", "valid_accuracy_pct", "stage1_verdict_agreement_pct",
                  "total_seconds", "train_seconds", "eval_seconds")
TAG_COLUMNS = ("dvc.exp_name",)
RUN_NAME, CREATED, DURATION = "attributes.`Run Name`", "runDateAndNestInfo", "duration"  # the UI's column ids
NOTE_MARK = "logged by the `report` stage of the DVC pipeline"  # a description without it is someone's: kept


def _col(kind: str, key: str) -> str:
    """A runs-table column id, as the UI writes them (``metrics.`accuracy_pct```)."""
    return f"{kind}.`{key}`"


def view_state() -> dict:
    """The saved view: the DVC experiment, the metrics in percent and the seconds, Duration and Source,
    with a run name column wide enough for the names (widths apply to the columns of ``columnOrder``)."""
    selected = ([_col("tags", t) for t in TAG_COLUMNS] + [_col("metrics", m) for m in METRIC_COLUMNS]
                + [_col("attributes", "Source")])
    return {
        "searchFilter": "", "orderByKey": "attributes.start_time", "orderByAsc": False,
        "selectedColumns": selected,
        "columnOrder": [RUN_NAME, CREATED] + selected[:-1] + [DURATION, selected[-1]],
        "columnWidths": {RUN_NAME: RUN_NAME_WIDTH},
    }


def runs_url(exp_id: str, view: bool = True) -> str:
    """The runs table (in the ML view, with the saved view), relative to the UI's address."""
    return (f"#/experiments/{exp_id}/runs?" + (f"viewStateShareKey={VIEW_ID}&" if view else "")
            + "workflowType=machine_learning")


def description(exp_id: str) -> str:
    """The experiment's description; its first line (all the UI shows until it is expanded) links the view."""
    return "\n".join([
        f"**[Compare the runs]({runs_url(exp_id)})**: accuracy (%), seconds, DVC experiment (Views: *{VIEW_NAME}*).",
        "",
        f"Mind's Mirror distillation runs, {NOTE_MARK} (`pipeline/tracking`):",
        "",
        "- **One parent run per run**, named after it (`<run>`; `[<experiment>] <run>` when `dvc exp run` logged it): "
        "the run's evaluation (`evaluate@<run>`), so its Duration is the evaluation's. Its child runs "
        "`<run>/stage1` and `<run>/stage2` are the training stages, each with its own Duration and curves. "
        "A `report` run holds the tables and figures.",
        "- **Metrics** ending in `_pct` are in percent, as in the tables (`accuracy_pct` is the table cell: the "
        "checkpoint selected on validation; `paper_protocol_accuracy_pct` selects on test); counts are counts. "
        "`train_seconds`, `eval_seconds` and `total_seconds` are the wall-clock seconds of the run's own stages.",
        "- **Experiments:** the tag `dvc.exp_name` (a column of the view), the run names and the Source "
        "(`main:<experiment>:<stage>`) say which `dvc exp run` logged a run. Filter one with "
        "``tags.`dvc.exp_name` = 'lr2'``, a table's runs with ``tags.`table.main` = 'yes'``; add the param you "
        "varied with Columns > Params (e.g. `train.lr`). A run whose files an experiment left unchanged is the "
        "run logged before, under its first name.",
        "- `dvc exp show` compares the tables' cells (see `docs/comparing-runs.md`).",
    ])


def _view_tag(current: str | None) -> str:
    """The saved view's tag value, keeping its creation time when it exists already."""
    state = json.dumps(view_state(), sort_keys=True)
    try:
        old = json.loads(current) if current else None
    except ValueError:
        old = None
    if isinstance(old, dict) and old.get("state") == state and old.get("name") == VIEW_NAME:
        return current  # unchanged: no write
    now = int(time.time() * 1000)
    created = old.get("createdAt") if isinstance(old, dict) and isinstance(old.get("createdAt"), int) else now
    return json.dumps({"name": VIEW_NAME, "createdAt": created, "updatedAt": now, "state": state})


def experiment_tags(exp_id: str, current: dict[str, str]) -> dict[str, str]:
    """The experiment's kind, description and saved view, as tags (equal to ``current`` when up to date).
    A description someone wrote (one without :data:`NOTE_MARK`) is kept."""
    note = current.get(NOTE_TAG)
    ours = not note or NOTE_MARK in note
    return {KIND_TAG: KIND, NOTE_TAG: description(exp_id) if ours else note,
            VIEW_TAG + VIEW_ID: _view_tag(current.get(VIEW_TAG + VIEW_ID))}


def describe(client, exp_id: str, current: dict[str, str]) -> None:
    """Set the tags of :func:`experiment_tags` that differ from the experiment's ``current`` tags."""
    for k, v in experiment_tags(exp_id, current).items():
        if current.get(k) != v:
            client.set_experiment_tag(exp_id, k, v)
