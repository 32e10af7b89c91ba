"""The sampled inference modes and the judges' statistics (pipeline/stages/infer.py), the inference and
label_noise dimensions of the spec, label noise in assemble, and the seeded sampler on a tiny model."""
from __future__ import annotations

import random

import pytest

from pipeline.core.records import Example, TrainRow
from pipeline.core.records_infer import Sample, SampleSet
from pipeline.core.spec_infer import Mode, parse_mode
from pipeline.core.spec_tables import TableSpec
from pipeline.stages.assemble import add_label_noise
from pipeline.stages.infer import auroc, judge_metrics, pick
from pipeline.tasks import get_task

SVAMP = get_task("svamp")


def test_modes_parse_and_bad_modes_name_the_reason():
    assert parse_mode("greedy") == Mode("greedy")
    assert parse_mode("vote@5") == Mode("vote", 5)
    assert parse_mode("verify@3") == Mode("verify", 3, "final")
    assert parse_mode("verify@3/stage1") == Mode("verify", 3, "stage1")
    for bad, why in (("verify@0", "k must be at least 1"), ("vote@-2", "k must be at least 1"),
                     ("beam@4", "is not an inference mode"), ("vote", "give the number of samples"),
                     ("vote@3/stage1", "only verify@k has a judge"), ("greedy@2", "greedy takes no")):
        with pytest.raises(ValueError, match=why):
            parse_mode(bad)


def _table(**over):
    spec = {"title": "t", "rows": "method", "cols": "inference",
            "values": {"method": ["cot5_se"], "inference": ["greedy", "verify@5"]}, "fixed": {"dataset": "svamp"}}
    spec.update(over)
    return TableSpec.model_validate(spec)


def test_table_checks_inference_and_label_noise_values():
    assert _table().values["inference"] == ["greedy", "verify@5"]
    with pytest.raises(ValueError, match=r"values.inference: 'verify@0': k must be at least 1"):
        _table(values={"method": ["cot5_se"], "inference": ["verify@0"]})
    with pytest.raises(ValueError, match=r"values.inference: 'top@3' is not an inference mode"):
        _table(values={"method": ["cot5_se"], "inference": ["top@3"]})
    with pytest.raises(ValueError, match=r"values.label_noise: 1.0 is not a share in \[0, 1\)"):
        _table(cols="label_noise", values={"method": ["cot5"], "label_noise": [0.0, 1.0]})
    with pytest.raises(ValueError, match=r"fixed.label_noise: -0.1 is not a share"):
        _table(fixed={"dataset": "svamp", "label_noise": -0.1})
    with pytest.raises(ValueError, match="judge_auroc needs a sampled inference mode"):
        _table(cols=None, values={"method": ["cot5_se"]}, metric=["accuracy", "judge_auroc"])


def test_auroc_matches_the_pairwise_definition():
    rng = random.Random(0)
    for _ in range(50):
        scores = [rng.choice([0.1, 0.2, 0.5, 0.7, 0.9]) for _ in range(12)]
        pos = [rng.random() < 0.5 for _ in scores]
        p = [s for s, y in zip(scores, pos) if y]
        n = [s for s, y in zip(scores, pos) if not y]
        if not p or not n:
            assert auroc(scores, pos) is None
            continue
        pairs = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in p for b in n) / (len(p) * len(n))
        assert auroc(scores, pos) == pytest.approx(pairs)
    assert auroc([0.9, 0.8, 0.1], [True, True, False]) == 1.0
    assert auroc([0.1, 0.8, 0.9], [True, False, False]) == 0.0


def test_pick_counts_votes_by_value_and_breaks_ties_by_the_first_drawn():
    assert pick(SVAMP, ["3", "( 1 + 2 )", "4"], [1, 1, 1]) == "3"  # 3 and 1 + 2 are one answer
    assert pick(SVAMP, ["4", "3"], [1, 1]) == "4"
    assert pick(SVAMP, ["4", "3", "3"], [0.9, 0.2, 0.3]) == "4"  # weighted: 0.9 > 0.5
    assert pick(SVAMP, [], []) is None


def test_judge_metrics_against_gold_correctness():
    def s(answer, correct, p, error=None):
        return Sample(rationale="r", answer=answer, correct=correct, error=error, p_correct={"final": p})

    sets = [SampleSet(id="a", gold="5", samples=[s("5", True, 0.9), s("6", False, 0.2, "arithmetic")],
                      vote="5", verify={"final": "5"}),
            SampleSet(id="b", gold="7", samples=[s("8", False, 0.6, "reasoning"), s("7", True, 0.4)],
                      vote="8", verify={"final": "8"}),
            SampleSet(id="c", gold="1", samples=[s("2", False, 0.3, "reasoning"), s("3", False, 0.1, "reasoning")],
                      vote="2", verify={"final": "2"})]
    j = judge_metrics(SVAMP, sets, "final")
    assert j.verify_accuracy == pytest.approx(1 / 3)
    # 'wrong' = P(correct) < 1/2: samples 2, 4 (a right one), 5, 6; wrong samples: 2, 3, 5, 6
    assert j.wrong_precision == pytest.approx(3 / 4)
    assert j.wrong_recall == pytest.approx(3 / 4)
    assert j.wrong_recall_by_error == {"arithmetic": 1.0, "reasoning": pytest.approx(2 / 3)}
    assert j.pick_rate == pytest.approx(1 / 2)  # a and b have a right sample; verify got a
    assert j.auroc == pytest.approx(auroc([0.9, 0.2, 0.6, 0.4, 0.3, 0.1], [True, False, False, True, False, False]))


def test_svamp_error_kinds_and_cot_text():
    assert SVAMP.error_kind("3 + 4 = 8. 8 - 2 = 6.") == "arithmetic"
    assert SVAMP.error_kind("3 x 4 = 12. 12 - 2 = 10.") == "reasoning"
    assert SVAMP.cot_text("3 + 4 = 7.", "7") == "3 + 4 = 7. The answer is 7."
    assert SVAMP.parse_answer(SVAMP.cot_text("3 + 4 = 7.", "7")).answer == "7"


@pytest.mark.parametrize("task,ex", [
    ("svamp", Example(id="q", split="train", origin="train", index=0, question="?", label="( 3 + 4 )")),
    ("cqa", Example(id="q", split="train", origin="train", index=0, question="?", choices=list("vwxyz"), label="x")),
    ("anli", Example(id="q", split="train", origin="train", index=0, question="?", premise="p", label="neutral")),
])
def test_wrong_labels_are_wrong_and_of_the_same_kind(task, ex):
    t = get_task(task)
    for seed in range(30):
        w = t.wrong_label(ex, random.Random(seed))
        assert not t.is_correct(w, ex.label)
        if task == "svamp":
            assert float(w) >= 0
        elif task == "cqa":
            assert w in ex.choices
        else:
            assert w in ("entailment", "contradiction")


def test_label_noise_replaces_a_share_of_questions_nested_and_keeps_rationales():
    exs = {f"q{i}": Example(id=f"q{i}", split="train", origin="train", index=i, question="?", label=str(i + 10))
           for i in range(50)}
    rows = [TrainRow(id=q, cot_index=j, input="?", label=ex.label, rationale=f"r{j}") for q, ex in exs.items()
            for j in range(2)]
    same, n0 = add_label_noise(SVAMP, rows, exs, 0.0, seed=0)
    assert same == rows and n0 == 0
    low, n_low = add_label_noise(SVAMP, rows, exs, 0.2, seed=0)
    high, n_high = add_label_noise(SVAMP, rows, exs, 0.4, seed=0)
    assert (n_low, n_high) == (10, 20)
    changed = lambda out: {r.id for r, o in zip(rows, out) if r.label != o.label}  # noqa: E731
    assert len(changed(low)) == 10 and changed(low) <= changed(high)
    assert all(not SVAMP.is_correct(o.label, exs[o.id].label) for o in high if o.id in changed(high))
    assert [o.rationale for o in high] == [r.rationale for r in rows]
    # both CoT rows of a question get the same wrong answer, the same at every share
    by_q = {}
    for o in high:
        by_q.setdefault(o.id, set()).add(o.label)
    assert all(len(v) == 1 for v in by_q.values())
    assert {o.id: o.label for o in low if o.id in changed(low)} == {o.id: o.label for o in high if o.id in changed(low)}
    other, _ = add_label_noise(SVAMP, rows, exs, 0.2, seed=1)
    assert changed(other) != changed(low)


def test_sampling_is_seeded_and_verdicts_are_a_distribution():
    torch = pytest.importorskip("torch")
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    from pipeline.student.decode import sample, verdict_probabilities
    from support import SHARED

    tok = AutoTokenizer.from_pretrained(str(SHARED / "models/t5-tokenizer"))
    cfg = T5Config.from_pretrained(str(SHARED / "models/t5-v1_1-small-config"), d_model=16, d_ff=32, d_kv=4,
                                   num_heads=2, num_layers=1, num_decoder_layers=1)
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(cfg)
    texts = ["Tom has 3 apples.", "Ann has 2 pens and buys 5."]
    kw = dict(batch_size=2, max_new_tokens=6, max_input=32, device="cpu", temperature=1.0, top_p=1.0)
    a = sample(model, tok, texts, 3, "explain: ", seed=7, **kw)
    b = sample(model, tok, texts, 3, "explain: ", seed=7, **kw)
    c = sample(model, tok, texts, 3, "explain: ", seed=8, **kw)
    assert a == b and a != c and [len(x) for x in a] == [3, 3]
    p = verdict_probabilities(model, tok, texts, ["correct", "wrong", "uncertain"], "predict: ", batch_size=1,
                              max_input=32, device="cpu")
    assert [len(x) for x in p] == [3, 3]
    assert all(abs(sum(x) - 1) < 1e-5 and min(x) > 0 for x in p)
    assert p[0] != p[1]
    torch.manual_seed(0)  # leave the global generator as a fresh process has it


@pytest.mark.parametrize("old,new,expected", [
    ("      - verify@3/stage1\n", "      - verify@0\n",
     r"^.+params\.yaml:\d+: tables\.inference\.values\.inference: 'verify@0': k must be at least 1"),
    ("      - verify@3/stage1\n", "      - beam@3\n",
     r"^.+params\.yaml:\d+: tables\.inference\.values\.inference: 'beam@3' is not an inference mode \(greedy, "),
    ("      label_noise:\n      - 0.0\n      - 0.4\n", "      label_noise:\n      - 0.0\n      - 1.0\n",
     r"^.+params\.yaml:\d+: tables\.label_noise\.values\.label_noise: 1\.0 is not a share in \[0, 1\)"),
])
def test_bad_modes_and_noise_in_a_profile_are_one_line_naming_the_key(tmp_path, old, new, expected):
    import re

    from pipeline.core.errors import PipelineError
    from pipeline.core.spec import load_params
    from pipeline.tasks import TASKS
    from support import ROOT

    text = (ROOT / "profiles/offline.yaml").read_text()
    assert old in text
    (tmp_path / "params.yaml").write_text(text.replace(old, new, 1))
    with pytest.raises(PipelineError) as e:
        load_params(tmp_path / "params.yaml", tasks=TASKS)
    msg = str(e.value)
    assert "\n" not in msg and re.search(expected, msg), msg


def test_a_cells_teacher_cost_is_its_share_of_each_kind_of_output(tmp_path, monkeypatch):
    """The teacher's bill of a cell: its train questions' first k CoTs (one for teacher labels without CoTs)
    and their first m evaluations, prorated from the teach metrics' totals per kind; none without a teacher."""
    from pipeline.core.artifacts import write_model
    from pipeline.core.records import AssembleMetrics, KindUsage, TeacherUsage, TeachMetrics
    from pipeline.runs import Run
    from pipeline.stages.cells import Metrics

    monkeypatch.chdir(tmp_path)
    kinds = {"cot": KindUsage(samples=1000, requests=200, prompt_tokens=50_000, completion_tokens=30_000, cost_usd=2.0),
             "self_eval": KindUsage(samples=5000, requests=1000, prompt_tokens=400_000, completion_tokens=100_000,
                                    cost_usd=10.0)}
    usage = TeacherUsage(model="m", endpoint="http://x", prompts={}, n_per_request=True, samples=6000, cached_samples=0,
                         requests=1200, http_attempts=1200, rate_limited=0, prompt_tokens=450_000,
                         completion_tokens=130_000, cost_usd=12.0, total_requests=1200, total_prompt_tokens=450_000,
                         total_completion_tokens=130_000, total_cost_usd=12.0, by_kind=kinds, quarantined={})
    write_model(tmp_path / "metrics/teach/svamp/t.json", TeachMetrics(dataset="svamp", teacher="t", backend="openai",
                                                                      splits={}, usage=usage))

    def run(method, labels, k, m):
        r = Run("svamp", "t" if labels == "teacher" or k else "none", method, "base", labels, k, m, 42)
        write_model(tmp_path / f"metrics/assemble/{r.assembly.name}.json", AssembleMetrics(
            assembly=r.assembly.name, dataset="svamp", teacher=r.teacher, labels=labels, cots=k, self_evals=m,
            questions=100, stage2_rows=1, stage1_rows=1, valid_rows=1, excluded_unparseable=0,
            excluded_unparseable_evaluations=0, questions_without_cots=0))
        return r

    metrics = Metrics()
    cot5_se = run("cot5_se", "teacher", 5, 5)  # 500 of 1000 CoTs, 2500 of 5000 evaluations
    assert metrics.value("teacher_usd", cot5_se) == pytest.approx(0.5 * 2.0 + 0.5 * 10.0)
    assert metrics.value("teacher_requests", cot5_se) == pytest.approx(100 + 500)
    assert metrics.value("teacher_tokens", cot5_se) == pytest.approx(0.5 * 80_000 + 0.5 * 500_000)
    assert metrics.value("teacher_usd", run("standard_kd", "teacher", 0, 0)) == pytest.approx(0.1 * 2.0)
    assert metrics.value("teacher_usd", run("cot1", "teacher", 1, 0)) == pytest.approx(0.1 * 2.0)
    assert metrics.value("teacher_usd", run("standard_ft", "gold", 0, 0)) == 0.0
    # a replayed teacher (no usage): not known
    write_model(tmp_path / "metrics/teach/svamp/t.json", TeachMetrics(dataset="svamp", teacher="t", backend="replay",
                                                                      splits={}))
    assert Metrics().value("teacher_usd", cot5_se) is None
