"""compare: a dataset's teachers on the same questions (``TeacherComparison``,
``metrics/teachers/<dataset>.json``).

Teachers answer different questions: recorded files cover what their authors kept, and a live
teacher's budget may stop it part-way. So each teacher's accuracy (its first CoT per question) and
parse rate are counted on the questions that *every* teacher of the dataset answered: in the first
split (test, valid, train) that every teacher answered in full, else in the split with the most
such questions. A teacher whose files hold only
CoTs that reached the gold answer (``selected: correct``) is marked: its figure is the agreement of
the kept CoTs with gold, not the teacher's accuracy. The self-evaluations are judged per teacher, over
all its evaluations, in the teach metrics (``verdicts``)."""
from __future__ import annotations

from ..core.artifacts import read_model, read_records, write_model
from ..core.errors import PipelineError
from ..core.paths import METRICS, TEACHER
from ..core.records import TeacherComparison, TeacherOnCommon, TeacherRecord, TeachMetrics
from ..core.spec import Params
from ..core.stageio import dataset_spec

ORDER = ("test", "valid", "train")


def run(params: Params, dataset: str, teachers: list[str] | None = None) -> TeacherComparison:
    """``teachers``: the list the command names (dvc.yaml, from runs.yaml), which must be the dataset's."""
    names = list(dataset_spec(params, dataset).teachers)
    if teachers is not None and teachers != names:
        raise PipelineError(f"compare {dataset}: told to compare {', '.join(teachers)}, but params.yaml lists "
                            f"{', '.join(names)}: runs.yaml is out of date; run `python -m pipeline plan`")
    found: dict[str, dict] = {}
    for split in ORDER:
        recs = {t: {r.id: r for r in read_records(TEACHER / dataset / t / f"{split}.jsonl", TeacherRecord)}
                for t in names}
        answered = [{i for i, r in rs.items() if r.cots} for rs in recs.values()]
        found[split] = {"recs": recs, "common": set.intersection(*answered) if answered else set()}
    full = [s for s in ORDER if found[s]["common"] and all(len(found[s]["common"]) == len(rs) for rs in found[s]["recs"].values())]
    split = full[0] if full else max(ORDER, key=lambda s: len(found[s]["common"]))  # max: the first of the most
    n, found = len(found[split]["common"]), found[split]
    teachers = {}
    for t in names:
        selected = read_model(METRICS / "teach" / dataset / f"{t}.json", TeachMetrics).selected_by_gold
        recs = found["recs"][t]
        cots = [c for i in found["common"] for c in recs[i].cots]
        first = sum(recs[i].cots[0].correct is True for i in found["common"])
        ratio = lambda a, b: round(a / b, 6) if b else None  # noqa: E731
        teachers[t] = TeacherOnCommon(accuracy=ratio(first, n), parse_rate=ratio(sum(c.status == "ok" for c in cots), len(cots)),
                                      cot_accuracy=ratio(sum(c.correct is True for c in cots), len(cots)), cots=len(cots),
                                      answered=sum(bool(r.cots) for r in recs.values()), selected_by_gold=selected)
    out = TeacherComparison(dataset=dataset, split=split if n else None, questions=n,
                            split_questions=len(next(iter(found["recs"].values()), {})), teachers=teachers)
    write_model(METRICS / "teachers" / f"{dataset}.json", out)
    return out
