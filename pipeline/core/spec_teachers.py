"""The spec's teachers: a replay of recorded outputs, a live OpenAI-compatible endpoint, or a simulated
teacher of known error rates (the sandbox).

``teachers.<name>`` holds the settings every dataset that lists the teacher shares, and
``datasets.<d>.teachers.<name>`` that dataset's differences: both are ``TeacherEntry`` (every setting
optional), and ``resolve_teacher`` merges them into a whole ``ReplayTeacher``, ``OpenAITeacher`` or
``SimulatedTeacher``.
"""
from __future__ import annotations

import re
from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .spec_base import Split, Strict

class ReplayFiles(Strict):
    """Recorded teacher outputs.

    ``dss_palm``: JSON arrays of strings aligned row by row with the split (several files are
    concatenated in order: ``train_CoT_0`` + ``train_CoT_1``). ``mcckd``: JSON list of
    ``{instruction, output: [CoTs]}`` matched to questions by text. ``tree_dump``: the Mind's Mirror
    Tree-of-Thoughts dump (``new_ys`` CoTs, ``value_outputs_list`` self-evaluations), matched by
    text. ``records``: this project's own teacher records (``teacher.schema.json``), matched by id.
    """

    format: Literal["dss_palm", "mcckd", "tree_dump", "records"]
    files: dict[Split, list[str]]
    selected: Literal["all", "correct"] = Field(
        "all", description="'correct': the files hold only CoTs that reached the gold answer, selected after sampling "
        "(the multi-teacher-eitnlp `_ranked` files agree with gold on 97-100% of questions): their accuracy is "
        "reported as such, never as the teacher's")
    parse: Literal["strict", "lenient"] = Field(
        "strict",
        description="'strict': the answer sentence as the prompt template (and the reference code) "
        "writes it; 'lenient': case-insensitive, and SVAMP takes the last number when there is no "
        "answer sentence (for CoTs sampled without a template, like MCC-KD's)",
    )


class ReplayTeacher(Strict):
    backend: Literal["replay"]
    description: str = Field("", description="what this teacher is and where its recorded outputs come from")
    sources: list[ReplayFiles] = Field(
        min_length=1, description="merged in order: a question's CoTs are concatenated"
    )


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class OpenAITeacher(Strict):
    """A live teacher on any OpenAI-compatible endpoint: its base URL (``base_url``, else the
    ``OPENAI_BASE_URL`` environment variable, else OpenAI's) and the *name* of the environment
    variable that holds its key (the key itself is never in params)."""

    backend: Literal["openai"]
    description: str = Field("", description="what this teacher is (model family, size, who serves it, when it was chosen)")
    model: str = Field(description="the model name the endpoint serves (models are retired: the paper's gpt-3.5-turbo "
                       "was shut down on 2026-10-23)")
    base_url: Optional[str] = Field(None, description="the endpoint, e.g. http://localhost:8000/v1 for `vllm serve`; "
                                    "none: OPENAI_BASE_URL, else https://api.openai.com/v1. No credentials here: "
                                    "the key comes from api_key_env")
    api_key_env: str = Field("OPENAI_API_KEY", description="the name of the environment variable holding the key")
    cots: int = Field(5, ge=1, description="k sampled CoTs per question")
    self_evals: int = Field(5, ge=0, description="m self-evaluations per CoT (train split)")
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(512, ge=1)
    splits: list[Split] = Field(default_factory=lambda: ["train", "test"])
    self_eval_splits: list[Split] = Field(default_factory=lambda: ["train"])
    concurrency: int = Field(8, ge=1)
    requests_per_minute: Optional[int] = Field(None, ge=1)
    tokens_per_minute: Optional[int] = Field(None, ge=1)
    use_n: Literal["auto", "always", "never"] = "auto"
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(6, ge=0)
    price_per_1m_input: float = Field(0.5, ge=0)
    price_per_1m_output: float = Field(1.5, ge=0)
    budget_usd: Optional[float] = Field(None, gt=0)
    mode: Literal["online", "batch"] = Field("online", description="online: chat-completions requests as they go; "
                                             "batch: each phase's requests as Batch API files (/v1/files, /v1/batches, "
                                             "completion_window 24h), at batch_price_factor of the price")
    batch_price_factor: float = Field(0.5, gt=0, le=1, description="the Batch API's price as a share of the online "
                                      "prices above (OpenAI: 0.5); counted against the same budget_usd")
    batch_poll_s: float = Field(30.0, gt=0, description="seconds between two polls of a batch's status")
    batch_max_requests: int = Field(50000, ge=1, le=50000, description="requests per batch file (OpenAI: at most "
                                    "50,000 and 100 MB)")
    journal: str = Field("data/teacher_journal.sqlite", description="response cache (kept out of git)")
    request_params: dict[str, Union[str, int, float, bool]] = Field(
        default_factory=dict, description="more fields of every request body, e.g. {reasoning_effort: none} for a "
        "reasoning model or {top_p: 0.95, seed: 0} for vLLM; part of each answer's journal key")

    @field_validator("request_params")
    @classmethod
    def _own_fields(cls, v: dict) -> dict:
        taken = sorted(set(v) & {"model", "messages", "n", "stream", "temperature", "max_tokens", "stop"})
        if taken:
            raise ValueError(f"{', '.join(taken)} is set by the teacher itself: use its own setting (e.g. temperature)")
        return v

    @field_validator("base_url")
    @classmethod
    def _no_credentials(cls, v: Optional[str]) -> Optional[str]:
        from urllib.parse import urlsplit

        if v is None:
            return v
        try:
            u = urlsplit(v)
            ok = u.scheme in ("http", "https") and bool(u.hostname)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{v!r} is not an http(s) URL, e.g. http://localhost:8000/v1")
        if u.username or u.password:
            raise ValueError("credentials in the URL would be written to params and dvc.lock: put the key in the "
                             "variable named by api_key_env")
        return v

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        if not _ENV_NAME.match(v):
            raise ValueError(f"{v!r} is not an environment variable name (the NAME of the variable, never the key)")
        return v


class SimulatedTeacher(Strict):
    """A teacher of known error rates for SVAMP-format questions (``pipeline/teacher/simulated.py``): its
    CoTs follow the gold equation step by step (``a op b = c``), a set share of them wrong in exactly one
    step, and its self-evaluations are right with a set probability. Seeded: the same settings give the
    same files. Its texts go through the same parsing as recorded ones."""

    backend: Literal["simulated"]
    description: str = Field("", description="what this simulated teacher stands for")
    cots: int = Field(5, ge=1, description="k CoTs per question")
    self_evals: int = Field(5, ge=0, description="m self-evaluations per CoT (self_eval_splits)")
    error_rate: float = Field(0.3, ge=0, le=1, description="the share of CoTs wrong in exactly one step (later steps "
                              "carry the error forward, so the answer is wrong)")
    spottable_share: float = Field(0.7, ge=0, le=1, description="of the wrong CoTs, the share whose error is a wrong "
                                   "operand or operator (computed right on it: visible only against the question); "
                                   "the others are arithmetic slips (right operands and operator, wrong result)")
    verdict_accuracy: float = Field(0.9, ge=0, le=1, description="the probability that a self-evaluation's verdict "
                                    "is right; its explanation points at the wrong step when it finds one")
    seed: int = Field(0, description="the seed of every draw (with the question's id)")
    splits: list[Split] = Field(default_factory=lambda: ["train", "valid", "test"])
    self_eval_splits: list[Split] = Field(default_factory=lambda: ["train", "valid"])
    price_per_1m_input: float = Field(0.5, ge=0, description="simulated price: the usage counts the words of a "
                                      "notional prompt (prompts/<task>/) and completion as tokens")
    price_per_1m_output: float = Field(1.5, ge=0)


Teacher = Annotated[Union[ReplayTeacher, OpenAITeacher, SimulatedTeacher], Field(discriminator="backend")]
_TEACHER_MODELS = {"replay": ReplayTeacher, "openai": OpenAITeacher, "simulated": SimulatedTeacher}


def _partial_teacher() -> type[BaseModel]:
    """Every setting of every backend, each optional, with its own constraints: a ``teachers.<name>``
    entry (the settings the datasets share) or a ``datasets.<d>.teachers.<name>`` entry (that
    dataset's differences). The two, merged, must make a whole ``Teacher`` of one backend."""
    import copy

    from pydantic import create_model

    fields: dict = {"backend": (Optional[Literal["replay", "openai", "simulated"]],
                                Field(None, description="replay: recorded outputs; openai: a live OpenAI-compatible "
                                      "endpoint; simulated: a teacher of known error rates (the sandbox)"))}
    for model in _TEACHER_MODELS.values():
        for name, f in model.model_fields.items():
            if name in fields:
                continue
            info = copy.copy(f)
            info.default, info.default_factory = None, None
            fields[name] = (Optional[f.annotation], info)
    return create_model("TeacherEntry", __config__=ConfigDict(extra="forbid", frozen=True),
                        __doc__=_partial_teacher.__doc__, **fields)


TeacherEntry = _partial_teacher()
NO_TEACHER = "none"  # the teacher of a run that uses no teacher output (gold labels, no CoTs)


def resolve_teacher(teachers: dict, ds: str, name: str, entry: BaseModel) -> Union[ReplayTeacher, OpenAITeacher,
                                                                                   SimulatedTeacher]:
    """Dataset ``ds``'s teacher ``name``: ``teachers.<name>`` with the dataset's differences (``entry``) over
    it, validated as a whole teacher of its backend; a ValueError names the key where the bad value is."""
    here = f"datasets.{ds}.teachers.{name}"
    if name not in teachers:
        raise ValueError(f"{here}: no `teachers.{name}` entry: state the teacher's shared settings there "
                         f"(known teachers: {', '.join(teachers)})")
    shared = teachers[name].model_dump(exclude_unset=True)
    own = entry.model_dump(exclude_unset=True)
    merged = {**shared, **own}
    backend = merged.get("backend")
    if backend is None:
        raise ValueError(f"teachers.{name}.backend: missing; one of {', '.join(_TEACHER_MODELS)}")
    model = _TEACHER_MODELS[backend]
    for key in merged:
        if key != "backend" and key not in model.model_fields:
            where = here if key in own else f"teachers.{name}"
            raise ValueError(f"{where}.{key}: not a setting of the {backend} backend "
                             f"(its settings: {', '.join(k for k in model.model_fields if k != 'backend')})")
    try:
        return model.model_validate(merged)
    except ValidationError as e:
        err = e.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else ""
        where = here if key in own else f"teachers.{name}"
        msg = "missing required key" if err["type"] == "missing" else err["msg"].removeprefix("Value error, ")
        raise ValueError(f"{where}.{key}: {msg}") from None
