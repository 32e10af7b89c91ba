"""The experiment spec: pydantic models of ``params.yaml``.

Every stage validates the whole file at start (unknown keys are rejected) and reads only its own
section, so a typo anywhere fails fast with the key path and the line, before anything is written.
``python -m pipeline schemas`` exports ``schemas/params.schema.json`` from these models.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Collection, Literal, Optional, Union

from pydantic import Field, PrivateAttr, ValidationError, ValidationInfo, field_validator, model_validator

from .errors import PipelineError
from .spec_base import SPLITS, Split, Strict
from .spec_budget import Budget, DatasetBudget, resolve_budget
from .spec_errors import did_you_mean, format_validation_error
from .spec_infer import InferSpec
from .spec_tables import StudentSpec, TableSpec, table_cells
from .spec_teachers import (NO_TEACHER, OpenAITeacher, ReplayFiles, ReplayTeacher, SimulatedTeacher, Teacher, TeacherEntry,
                            resolve_teacher)

# the spec's names, wherever they are defined (the teachers in spec_teachers.py, the tables in spec_tables.py)
__all__ = ["SPLITS", "NO_TEACHER", "AssembleSpec", "DatasetSpec", "EvaluateSpec", "HubSource", "InferSpec", "LocalSource",
           "MethodSpec", "OpenAITeacher", "Params", "ReplayFiles", "ReplayTeacher", "SimulatedTeacher", "Source", "Split", "Strict",
           "StudentSpec", "SyntheticSource", "TableSpec", "Teacher", "TeacherEntry", "TrainSpec", "ValidSplit", "format_validation_error",
           "load_params", "params_json_schema"]


# --------------------------------------------------------------------------- data sources
_MANIFEST = (
    "split manifest (JSON: {splits: {train|valid|test: [example ids]}}): every split listed above is "
    "loaded and pooled, and each row goes to the manifest split holding its example id, in the "
    "manifest's order; rows whose id is in no split are dropped (counted in metrics/prepare)"
)


class HubSource(Strict):
    """A dataset on the Hugging Face Hub (or a local copy in its layout), loaded with
    ``datasets.load_dataset``."""

    kind: Literal["hub"]
    id: str = Field(description="Hub dataset id, e.g. ChilleD/SVAMP, or a local folder in the Hub's layout "
                    "(e.g. local_hub/ChilleD/SVAMP from scripts/make_local_hub.py)")
    config: Optional[str] = Field(None, description="Hub config name, if any")
    splits: dict[Split, str] = Field(description="canonical split -> Hub split name")
    manifest: Optional[str] = Field(None, description=_MANIFEST)


class LocalSource(Strict):
    """Local files in a format the task understands (``dss``: Distilling step-by-step JSON lines;
    ``mcckd``: the MCC-KD / ChilleD SVAMP JSON list)."""

    kind: Literal["local"]
    format: Literal["dss", "mcckd"]
    files: dict[Split, str] = Field(description="canonical split -> file path")
    manifest: Optional[str] = Field(None, description=_MANIFEST)


class SyntheticSource(Strict):
    """Seeded synthetic SVAMP-format word problems (``pipeline/sources/synthetic.py``): a chain of 2-4
    arithmetic steps told as a short story, its label the SVAMP equation, e.g. ``( ( 3 + 4 ) - 2 )``.
    Rows are SVAMP Hub rows (Body, Question, Equation), so the ``svamp`` task must be the dataset's
    task; the validation split is carved from train by ``valid:``. The same settings give the same rows."""

    kind: Literal["synthetic"]
    train: int = Field(ge=1, le=100_000, description="train questions generated")
    test: int = Field(ge=1, le=100_000, description="test questions generated (none of them is a train question)")
    min_steps: int = Field(2, ge=1, le=6, description="fewest arithmetic steps (operations) of a question")
    max_steps: int = Field(4, ge=1, le=6, description="most arithmetic steps of a question")
    max_number: int = Field(9, ge=2, le=99, description="largest number a question states (factors of `*`: 2 or 3)")
    operators: list[Literal["+", "-", "*"]] = Field(
        default_factory=lambda: ["+", "-", "*"], min_length=1,
        description="the operations the steps draw from (every value stays a whole number >= 0)")
    seed: int = Field(0, description="the generator's seed")

    @property
    def manifest(self) -> None:  # a generated source is never re-split by a split manifest
        return None

    @model_validator(mode="after")
    def _steps(self) -> "SyntheticSource":
        if self.min_steps > self.max_steps:
            raise ValueError(f"min_steps: {self.min_steps} is more than max_steps {self.max_steps}")
        if len(set(self.operators)) != len(self.operators):
            raise ValueError("operators: list each operator once")
        if not {"+", "-"} & set(self.operators):
            raise ValueError("operators: add + or - (`*` is used at most once per question)")
        return self


Source = Annotated[Union[HubSource, LocalSource, SyntheticSource], Field(discriminator="kind")]


class ValidSplit(Strict):
    """How to carve a validation split from train when the source has none (by question)."""

    fraction: float = Field(0.1, gt=0, lt=1)
    seed: int = 0


class DatasetSpec(Strict):
    task: str = Field(description="which task module parses/scores it: a name in the task registry "
                                   "(pipeline/tasks/__init__.py)")
    source: Source
    valid: ValidSplit = ValidSplit()
    limit: dict[Split, int] = Field(
        default_factory=dict, description="keep only the first N examples of a split (tiny runs)"
    )
    teachers: dict[str, TeacherEntry] = Field(
        min_length=1, description="this dataset's teachers, by name: its differences from the shared settings in "
        "`teachers.<name>` ({} when there are none); a replay teacher's recorded files go here")
    teacher: str = Field(description="the default teacher: the one of a table cell that names no teacher")

    @model_validator(mode="after")
    def _default_teacher(self) -> "DatasetSpec":
        if self.teacher not in self.teachers:
            raise ValueError(f"teacher: {self.teacher!r} is not one of this dataset's teachers ({', '.join(self.teachers)})")
        return self

    @model_validator(mode="after")
    def _synthetic_is_svamp(self) -> "DatasetSpec":
        if isinstance(self.source, SyntheticSource) and self.task != "svamp":
            raise ValueError(f"task: {self.task!r}, but a synthetic source writes SVAMP rows: use task svamp")
        return self

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str, info: ValidationInfo) -> str:
        known = (info.context or {}).get("tasks")  # the registry's names, given by load_params' caller
        if known is not None and v not in known:
            raise ValueError(f"unknown task {v!r} (known: {', '.join(sorted(known))})")
        return v

    @field_validator("limit")
    @classmethod
    def _positive(cls, v: dict) -> dict:
        for k, n in v.items():
            if n < 1:
                raise ValueError(f"{k}: must be >= 1")
        return v


# --------------------------------------------------------------------------- methods
class MethodSpec(Strict):
    """One method of the paper, as data: its defaults for a table cell.

    ``cots: 0`` = label-only ("standard"); ``cots: k`` = multi-task on k teacher CoTs per question;
    ``self_evals: m`` > 0 adds a first training stage on the teacher's self-evaluations of those
    CoTs (m per CoT), and the CoT stage continues from its checkpoint. A table may override
    ``labels``, ``cots`` and ``self_evals`` per cell (the #CoTs and #self-evaluations ablations).
    """

    labels: Literal["gold", "teacher"] = Field(description="label targets: gold or the teacher's parsed answer")
    cots: int = Field(ge=0)
    self_evals: int = Field(0, ge=0)
    epochs: float = Field(gt=0, description="epochs of stage 2 (the CoT/label stage; the only stage of one-stage runs)")
    se_epochs: float = Field(0, ge=0, description="epochs of stage 1 (the self-evaluation stage of two-stage runs)")
    datasets: dict[str, DatasetBudget] = Field(
        default_factory=dict, description="per-dataset overrides of the training budget (spec_budget.py): a stage's "
        "epochs or steps, and stage 2's selection cadence; the run's name stays the same")

    @model_validator(mode="after")
    def _consistent(self) -> "MethodSpec":
        if self.self_evals and not self.cots:
            raise ValueError("self_evals needs cots >= 1 (it evaluates the teacher's CoTs)")
        if self.self_evals and not self.se_epochs:
            raise ValueError("se_epochs: must be > 0 when self_evals > 0")
        for ds, b in self.datasets.items():
            if b.stage1 is not None and not self.se_epochs:
                raise ValueError(f"datasets.{ds}.stage1: this method has no stage 1 (se_epochs 0)")
        return self


class AssembleSpec(Strict):
    unparseable: Literal["exclude"] = Field(
        "exclude", description="teacher outputs without a parseable answer are dropped and counted"
    )
    se_input: Literal["cot", "question_cot"] = Field(
        "cot", description="self-evaluation input: the CoT alone (official code) or question + CoT"
    )
    noise_seed: int = Field(0, description="seed of the label_noise draw: which training answers are replaced, "
                            "and by which wrong answer")


class TrainSpec(Strict):
    lr: float = Field(gt=0)
    batch_size: int = Field(ge=1, description="rows per device per micro-step (under DDP the global batch is world size x batch_size)")
    grad_accum: int = Field(1, ge=1)
    alpha: float = Field(ge=0, le=1)
    max_input_length: int = Field(ge=8)
    max_target_length: int = Field(ge=2)
    weight_decay: float = Field(0.0, ge=0)
    max_steps: Optional[int] = Field(None, ge=1, description="cap on optimiser steps per stage (tiny runs)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 autocast on CUDA, fp32 on CPU")
    forward: Literal["auto", "joint", "separate"] = Field(
        "auto", description="predict:/explain: halves in one forward pass (joint) or two (separate); "
        "auto = separate (faster in our measurements, see benchmarks/README.md). The loss is the same: each half's own token mean")
    log_every: int = Field(10, ge=1, description="optimiser steps between loss records")
    select_every: float = Field(1.0, ge=0, description="epochs between validation evaluations for checkpoint selection, counted across epoch boundaries (fractions allowed; each point is evaluated after the first optimiser step that reaches it); the end of training is always evaluated, once (0: only at the end)")
    paper_protocol: bool = Field(True, description="also score the test split at every selection point and report the best (the official code's selection), labelled as such")
    select_batch_size: int = Field(64, ge=1)
    select_max_new_tokens: int = Field(64, ge=1)
    select_cap: bool = Field(True, description="decode each selection point's answers to the longest tokenised training "
                             "label first, then only the rows still going to select_max_new_tokens: the uncapped predictions "
                             "(up to floating-point differences of batch shape), so the same selected step, in fewer decoder steps")
    save_every_steps: int = Field(0, ge=0, description="resumable checkpoint cadence in steps (0: at each selection point)")


class EvaluateSpec(Strict):
    split: Split = "test"
    limit: Optional[int] = Field(None, ge=1, description="score the student on the first N examples of the split only (tiny runs; the teacher stage still sees all)")
    batch_size: int = Field(64, ge=1)
    max_new_tokens: int = Field(64, ge=1, description="for the predict: output (the answer)")
    keep_rationales: bool = Field(True, description="also generate the student's explain: output for every test question")
    rationale_max_new_tokens: int = Field(256, ge=1)


_NAME = re.compile(r"^[A-Za-z0-9_]+$")  # dataset / method / student keys: run names join them with '-'
_LABELS = ("gold", "teacher")


class Params(Strict):
    profile: str = Field(description="name of this configuration, logged as a tag")
    seed: int = Field(description="the seed of every table that lists no `seeds`")
    teachers: dict[str, TeacherEntry] = Field(
        min_length=1, description="the teachers, by name: the settings every dataset that lists the teacher shares "
        "(backend, model, endpoint, sampling, prices); a dataset states only its differences")
    datasets: dict[str, DatasetSpec] = Field(min_length=1)
    methods: dict[str, MethodSpec] = Field(min_length=1)
    students: dict[str, StudentSpec] = Field(min_length=1, description="student sizes the tables name (small, base, large)")
    tables: dict[str, TableSpec] = Field(min_length=1, description="the tables and figures to regenerate; the runs are their cells")
    assemble: AssembleSpec = AssembleSpec()
    train: TrainSpec
    evaluate: EvaluateSpec = EvaluateSpec()
    infer: InferSpec = Field(InferSpec(), description="how the sampled inference modes (vote@k, verify@k) draw "
                             "their k samples (the infer stage)")

    _resolved: dict = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _references(self) -> "Params":
        for section in ("teachers", "datasets", "methods", "students", "tables"):
            for key in getattr(self, section):
                if not _NAME.match(key):
                    raise ValueError(f"{section}.{key}: use letters, digits and _ only (run names join keys with '-')")
        if NO_TEACHER in self.teachers:
            raise ValueError(f"teachers.{NO_TEACHER}: reserved (the teacher of runs that use no teacher output)")
        for ds, spec in self.datasets.items():
            for name, entry in spec.teachers.items():
                self._resolved[ds, name] = resolve_teacher(self.teachers, ds, name, entry)
        for name, m in self.methods.items():
            for ds in m.datasets:
                if ds not in self.datasets:
                    raise ValueError(f"methods.{name}.datasets.{ds}: not a key of datasets{did_you_mean(ds, self.datasets)} "
                                     f"(known: {', '.join(self.datasets)})")
        for name, t in self.tables.items():
            self._check_table(name, t)
        return self

    def budget(self, method: str, dataset: str, stage: str) -> Budget:
        """How long ``method``'s ``stage`` (stage1 | stage2) trains on ``dataset``: its override, else its defaults."""
        return resolve_budget(self.methods[method], dataset, stage, self.train.select_every)

    def teacher(self, dataset: str, name: Optional[str] = None) -> Union[ReplayTeacher, OpenAITeacher, SimulatedTeacher]:
        """A dataset's teacher, settings merged (``name`` None: the dataset's default)."""
        name = name or self.datasets[dataset].teacher
        try:
            return self._resolved[dataset, name]
        except KeyError:
            raise PipelineError(f"teacher {name!r} is not one of dataset {dataset!r}'s teachers "
                                f"({', '.join(self.datasets[dataset].teachers)})") from None

    def _check_table(self, name: str, t: TableSpec) -> None:
        def where(d: str) -> str:
            return f"tables.{name}." + ("values" if d in (t.rows, t.cols) else "fixed") + f".{d}"

        sections = {"dataset": ("datasets", self.datasets), "method": ("methods", self.methods),
                    "student": ("students", self.students)}
        for _, _, dims in table_cells(t):
            for d in (("dataset",) if t.teacher_only else ("method", "dataset", "student")):
                if d not in dims:
                    raise ValueError(f"tables.{name}: set `{d}` (as rows, cols or a fixed value)")
            for d, (section, known) in sections.items():
                if d in dims and str(dims[d]) not in known:
                    raise ValueError(f"{where(d)}: {dims[d]!r} is not a key of {section}{did_you_mean(dims[d], known)} "
                                     f"(known: {', '.join(known)})")
            if "teacher" in dims:
                ds = str(dims["dataset"])
                if str(dims["teacher"]) not in self.datasets[ds].teachers:
                    raise ValueError(f"{where('teacher')}: {dims['teacher']!r} is not a teacher of dataset {ds} "
                                     f"(its teachers: {', '.join(self.datasets[ds].teachers)}; omit the cell if it has none)")
            if t.teacher_only:
                continue
            m = self.methods[str(dims["method"])]
            labels = dims.get("labels", m.labels)
            cots, evals = dims.get("cots", m.cots), dims.get("self_evals", m.self_evals)
            if labels not in _LABELS:
                raise ValueError(f"{where('labels')}: {labels!r} is not gold or teacher")
            for d, v in (("cots", cots), ("self_evals", evals)):
                if not isinstance(v, int) or v < 0:
                    raise ValueError(f"{where(d)}: {v!r} is not a whole number >= 0")
            if evals and not cots:
                raise ValueError(f"{where('self_evals')}: self_evals {evals} needs cots >= 1")
            if evals and not m.se_epochs:
                raise ValueError(f"{where('self_evals')}: method {dims['method']!r} has se_epochs 0: no stage 1 for self_evals {evals}")
            if "verdict_agreement" in t.metrics and not evals:
                raise ValueError(f"tables.{name}.metric: verdict_agreement needs self_evals > 0 in every cell")


# --------------------------------------------------------------------------- loading
def _yaml():
    from ruamel.yaml import YAML

    return YAML(typ="rt")  # round-trip loader: YAML 1.2 like DVC, and keeps line numbers


def load_params(path: str | Path = "params.yaml", tasks: Optional[Collection[str]] = None,
                t5_fields: Optional[Collection[str]] = None) -> Params:
    """``params.yaml``, validated; ``tasks``: the task registry's names, which each dataset's ``task``
    must be one of (the CLI passes them: this layer knows no task); ``t5_fields``: the settings a
    student's ``config_overrides`` may name (the ``spec`` stage passes them)."""
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path}: params file not found")
    yaml = _yaml()
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"))
    except Exception as e:  # ruamel's errors carry the line
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise PipelineError(f"{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(doc, dict):
        raise PipelineError(f"{path}: expected a mapping at the top level")
    try:
        context = {k: v for k, v in (("tasks", tasks), ("t5_fields", t5_fields)) if v is not None}
        return Params.model_validate(_plain(doc), context=context or None)
    except ValidationError as e:
        raise PipelineError(format_validation_error(e, str(path), doc, Params)) from None


def _plain(obj):
    """ruamel CommentedMap/Seq -> plain dict/list (and ruamel scalars -> Python scalars)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, bool) or obj is None:
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        return str(obj)
    return obj


def params_json_schema() -> dict:
    schema = Params.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Mind's Mirror reproduction: params.yaml"
    return schema
