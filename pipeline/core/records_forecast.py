"""The compute plan's artifacts: a student's measured (or assumed) throughput on a device (``Throughput``,
``benchmarks/calibration/*.json``, written by ``benchmarks/bench_train.py --calibrate``), and the forecast
of a profile (``Forecast``, ``reports/forecast.json``, written by ``python -m pipeline forecast``)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from .records import Record


class Throughput(Record):
    """How fast one student trains and decodes on one kind of device: what the forecast divides by."""

    student: str = Field(description="the student's id, as params.yaml's students.<size>.id names it")
    device: Literal["cpu", "cuda"]
    device_name: str = Field(description="e.g. 'NVIDIA H200' or '2-core x86_64 CPU'")
    precision: Literal["fp32", "bf16"]
    parameters: Optional[int] = Field(None, ge=0)
    train_examples_per_s: float = Field(gt=0, description="multi-task training rows per second (predict: + explain: halves)")
    answer_decodes_per_s: float = Field(gt=0, description="greedy answer decodes per second (at the lengths `lengths` says)")
    rationale_decodes_per_s: float = Field(gt=0, description="greedy rationale decodes per second (at the lengths `lengths` says)")
    lengths: str = Field(description="the rows' lengths the figures were measured at")
    source: Literal["measured", "assumed"]
    measured: str = Field(description="where and when it was measured (or, for an assumed figure, how it was derived)")
    command: str = Field(description="the command that measures it")


class StageForecast(Record):
    stage: Literal["stage1", "stage2"]
    rows: int = Field(ge=0, description="training rows (every teacher output assumed parseable)")
    budget: str = Field(description="e.g. '300 epochs' or '40000 steps', and where it comes from")
    steps: int = Field(ge=0, description="optimiser steps")
    examples: int = Field(ge=0, description="rows trained on: steps x batch_size x grad_accum")
    selection_points: int = Field(ge=0)
    decodes: int = Field(ge=0, description="greedy decodes: each selection point's valid (+ test) questions, "
                         "or stage 1's held-out evaluations")


class RunForecast(Record):
    run: str
    tables: list[str]
    stages: list[StageForecast]
    answer_decodes: int = Field(ge=0, description="selection, evaluate and sampled answers")
    rationale_decodes: int = Field(ge=0, description="evaluate's rationales and the sampled ones")
    hours: Optional[float] = Field(ge=0, description="accelerator hours (None: no throughput for this student)")


class TeacherForecast(Record):
    teaching: str
    backend: str
    model: Optional[str]
    requests: int = Field(ge=0)
    samples: int = Field(ge=0)
    prompt_tokens: int = Field(ge=0)
    completion_tokens_max: int = Field(ge=0)
    usd_max: Optional[float] = Field(ge=0, description="cost if every sample ran to max_tokens (None: replayed or simulated)")
    note: str = ""


class TableForecast(Record):
    table: str
    runs: int = Field(ge=0)
    steps: int = Field(ge=0)
    selection_points: int = Field(ge=0)
    hours: Optional[float] = Field(ge=0)


class Forecast(Record):
    profile: str
    device: Literal["cpu", "cuda"]
    throughputs: dict[str, Throughput] = Field(description="student key -> the figure used")
    questions: dict[str, dict[str, int]] = Field(description="dataset -> split -> questions counted")
    sizes_from: dict[str, str] = Field(description="dataset -> where its counts come from")
    runs: list[RunForecast]
    tables: list[TableForecast]
    teachers: list[TeacherForecast]
    steps: int = Field(ge=0, description="optimiser steps of the profile (each run once)")
    selection_points: int = Field(ge=0)
    hours: Optional[float] = Field(ge=0, description="accelerator hours of the profile (None: a student has no throughput)")
    usd_max: float = Field(ge=0, description="the teachers' bill if every sample ran to max_tokens")
