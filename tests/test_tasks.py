"""Task modules: answer parsing, scoring, student inputs, the safe arithmetic evaluator and
self-evaluation parsing (no data files needed)."""
from __future__ import annotations

import pytest

from pipeline.tasks import TASKS, get_task, parse_self_evaluation
from pipeline.tasks.anli import LABELS
from pipeline.tasks.arith import safe_eval
from pipeline.core.errors import PipelineError
from support.examples import example


@pytest.fixture(scope="module")
def svamp():
    return get_task("svamp")


@pytest.fixture(scope="module")
def cqa():
    return get_task("cqa")


@pytest.fixture(scope="module")
def anli():
    return get_task("anli")


# --------------------------------------------------------------------------- registry
def test_registry_and_unknown_task():
    assert set(TASKS) == {"svamp", "cqa", "anli"}
    with pytest.raises(PipelineError, match="nope"):
        get_task("nope")


# --------------------------------------------------------------------------- safe_eval
def test_safe_eval_arithmetic():
    assert safe_eval("( 84.0 / 2.0 )") == 42.0
    assert safe_eval("( ( 17.0 + 15.0 ) + 2.0 )") == 34.0
    assert safe_eval("-3") == -3.0
    assert safe_eval("2 ** 10") == 1024.0


@pytest.mark.parametrize("expr", [
    "__import__('os').system('x')",
    "x",
    "x + 1",
    "(1).real",
    "a.b",
    "open('f')",
    "lambda: 1",
    "[1]",
    "'a' * 3",
    "True + 1",
    "1 if 1 else 2",
])
def test_safe_eval_refuses_non_arithmetic(expr):
    assert safe_eval(expr) is None


@pytest.mark.parametrize("expr", ["2 ** 1000", "9 ** 9 ** 9", "(10 ** 7) ** 2 ** 6", "1e308 * 10"])
def test_safe_eval_refuses_huge_values(expr):
    assert safe_eval(expr) is None


@pytest.mark.parametrize("expr", ["999999 ** 64", "10 ** 60 * 10 ** 60 * 10 ** 60 * 10 ** 60 * 10 ** 60 * 10 ** 60"])
def test_safe_eval_huge_int_is_none_not_an_exception(expr):
    assert safe_eval(expr) is None


@pytest.mark.parametrize("expr", ["1 / 0", "5 // 0", "5 % 0", "(3 + 4) / (2 - 2)"])
def test_safe_eval_division_by_zero(expr):
    assert safe_eval(expr) is None


# --------------------------------------------------------------------------- SVAMP
def test_svamp_equation_scored_by_value(svamp):
    assert svamp.is_correct("(84 / 2)", "( 84.0 / 2.0 )")
    assert svamp.is_correct("42", "( 84.0 / 2.0 )")
    assert not svamp.is_correct("(84 * 2)", "( 84.0 / 2.0 )")
    assert not svamp.is_correct(None, "( 84.0 / 2.0 )")
    assert not svamp.is_correct("(84 / 0)", "( 84.0 / 2.0 )")


PALM_RUN_ON = (
    "They put 10 seeds in each flower bed. There are 45 flower beds. So they planted 10 * 45 seeds. "
    "10 * 45 is 450. The answer is (10 * 45).\n\n"
    "Q: There are 15 trees in the grove. After they are done, there will be 21 trees. "
    "How many trees did the grove workers plant today?\n"
    "A: There are originally 15 trees. So there must have been 21 - 15 = 6. The answer is (1 + 1)."
)


def test_svamp_takes_first_answer_not_run_on(svamp):
    p = svamp.parse_answer(PALM_RUN_ON)
    assert p.status == "ok"
    assert p.answer == "(10 * 45)"
    assert p.rationale.endswith("10 * 45 is 450.")
    assert "Q:" not in p.rationale
    assert svamp.is_correct(p.answer, "( 10.0 * 45.0 )")


def test_svamp_does_not_read_answer_from_run_on(svamp):
    text = ("He has 3 apples and gets 4 more, so he has 7.\n\nQ: How many?\n"
            "A: 1 plus 1 is 2. The answer is (1 + 1).")
    for mode in ("strict",):
        p = svamp.parse_answer(text, mode=mode)
        assert p.status == "no_answer"
        assert p.answer is None
    # lenient falls back to the last number *before* the run-on, never (1 + 1)
    p = svamp.parse_answer(text, mode="lenient")
    assert p.status == "ok" and p.answer == "7"


def test_svamp_lenient_last_number_and_strict_no_answer(svamp):
    text = "Danny found 15 + 18 = 33 items.\nDanny has 100 - 68 = 32 more wrappers than bottle caps."
    lenient = svamp.parse_answer(text, mode="lenient")
    assert lenient.status == "ok"
    assert lenient.answer == "32"
    assert svamp.is_correct(lenient.answer, "32")
    strict = svamp.parse_answer(text, mode="strict")
    assert strict.status == "no_answer"
    assert strict.answer is None
    assert strict.reason


def test_svamp_lowercase_answer_sentence_only_lenient(svamp):
    text = "3 + 4 = 7. the answer is (3 + 4)."
    assert svamp.parse_answer(text).status == "no_answer"
    p = svamp.parse_answer(text, mode="lenient")
    assert p.status == "ok" and p.answer == "(3 + 4)"


def test_svamp_bad_and_empty(svamp):
    assert svamp.parse_answer("").status == "empty"
    assert svamp.parse_answer("   \n").status == "empty"
    p = svamp.parse_answer("Hmm. The answer is (__import__('os').system('x')).")
    assert p.status == "bad_answer" and p.answer is None
    p = svamp.parse_answer("So 4 / 0. The answer is (4 / 0).")
    assert p.status == "bad_answer"


def test_svamp_plain_number_answer(svamp):
    p = svamp.parse_answer("So 3 + 4 = 7. The answer is 7.")
    assert p.status == "ok" and p.answer == "7"


# --------------------------------------------------------------------------- CQA
CHOICES = ["ocean", "desert", "wooded area", "city", "sky"]


def test_cqa_parse_choice_text(cqa):
    text = ("Trees grow in forests, and a forest is a wooded area. So the answer is (c) wooded area.\n\n"
            "Q: Where do fish live?\nAnswer Choices:\n(a) ocean\nA: Fish live in water. So the answer is (a) ocean.")
    p = cqa.parse_answer(text, example(choices=CHOICES))
    assert p.status == "ok"
    assert p.answer == "wooded area"
    assert p.rationale == "Trees grow in forests, and a forest is a wooded area."
    assert cqa.is_correct(p.answer, "wooded area")
    assert not cqa.is_correct("ocean", "wooded area")
    assert not cqa.is_correct(None, "wooded area")


def test_cqa_letter_only_uses_choices(cqa):
    p = cqa.parse_answer("Trees. So the answer is (c).", example(choices=CHOICES))
    assert p.status == "ok" and p.answer == "wooded area"


def test_cqa_no_answer_and_case(cqa):
    assert cqa.parse_answer("Trees grow in forests.").status == "no_answer"
    assert cqa.parse_answer("Trees. so the answer is (c) wooded area.").status == "no_answer"
    assert cqa.parse_answer("Trees. so the answer is (c) wooded area.", mode="lenient").answer == "wooded area"
    assert cqa.parse_answer("Trees. So the answer is the forest.").status == "bad_answer"


def test_cqa_model_input(cqa):
    s = cqa.model_input(example("Where do trees grow?", choices=CHOICES))
    assert s.splitlines() == [
        "Where do trees grow?",
        "Answer Choices:",
        "(a) ocean",
        "(b) desert",
        "(c) wooded area",
        "(d) city",
        "(e) sky",
    ]


# --------------------------------------------------------------------------- ANLI
def test_anli_labels(anli):
    assert LABELS == ("entailment", "neutral", "contradiction")
    rows = [anli.from_local_row({"uid": f"u{i}", "premise": "P", "hypothesis": "H", "label": i}, "dss")
            for i in range(3)]
    assert [r["label"] for r in rows] == ["entailment", "neutral", "contradiction"]
    assert anli.from_local_row({"uid": "u", "premise": "P", "hypothesis": "H", "label": "2"}, "dss")["label"] == "contradiction"
    with pytest.raises(ValueError):
        anli.from_local_row({"uid": "u", "premise": "P", "hypothesis": "H", "label": 3}, "dss")


def test_anli_model_input(anli):
    ex = example("A person makes music.", premise="A man plays guitar.")
    assert anli.model_input(ex) == "A man plays guitar. </s> A person makes music."


def test_anli_parse_strict_vs_lenient(anli):
    text = "The man plays guitar, which is music. so the answer is entailment."
    strict = anli.parse_answer(text)
    assert strict.status == "no_answer" and strict.answer is None
    lenient = anli.parse_answer(text, mode="lenient")
    assert lenient.status == "ok" and lenient.answer == "entailment"
    assert anli.is_correct(lenient.answer, "entailment")
    assert not anli.is_correct("neutral", "entailment")


def test_anli_first_answer_and_bad_label(anli):
    text = ("It contradicts the premise. So the answer is contradiction.\n\n"
            "Premise: x\nHypothesis: y\nSo the answer is neutral.")
    p = anli.parse_answer(text)
    assert p.status == "ok" and p.answer == "contradiction"
    assert anli.parse_answer("Hmm. So the answer is maybe.").status == "bad_answer"


# --------------------------------------------------------------------------- self-evaluation
EVAL = ("Evaluation:\n\nThe given answer correctly divides 84 by 2.\n\n"
        "Evaluation result: the given answer is correct.")


@pytest.mark.parametrize("word,verdict", [("correct", "correct"), ("wrong", "wrong"),
                                          ("incorrect", "wrong"), ("uncertain", "uncertain")])
def test_parse_self_evaluation_verdicts(word, verdict):
    text = EVAL.replace("is correct.", f"is {word}.")
    explanation, v = parse_self_evaluation(text)
    assert v == verdict
    assert explanation == "Evaluation:\n\nThe given answer correctly divides 84 by 2."
    assert "Evaluation result" not in explanation


def test_parse_self_evaluation_none():
    assert parse_self_evaluation("The given answer seems fine to me.") == (None, None)
    assert parse_self_evaluation("") == (None, None)


# --------------------------------------------------------------------------- shared parse skeleton, choices
@pytest.mark.parametrize("name", ["svamp", "cqa", "anli"])
def test_parse_skeleton_is_shared(name):
    """Task.parse_answer: the empty check, the run-on cut and the answer sentence by mode are the same
    for every task; only the reading of the answer after the sentence is the task's."""
    t = get_task(name)
    assert t.parse_answer(" \n").status == "empty"
    p = t.parse_answer("No answer sentence here.")
    assert (p.status, p.reason) == ("no_answer", f"no '{t.answer_phrase}' sentence")
    run_on = f"Some reasoning.\n\nQ: next exemplar\nA: more. {t.answer_phrase} (a) x."
    assert t.parse_answer(run_on).status == "no_answer"  # the answer sentence of a run-on is not read


def test_prompt_choices_are_the_tasks_formatting(cqa):
    from pipeline.teacher.prompts import example_values

    ex = example("Where do trees grow?", "wooded area", choices=["wooded \n  area", *CHOICES[1:]])
    values = example_values(cqa, ex)
    assert values["choices"] == cqa.format_choices(["wooded area", *CHOICES[1:]])
    assert values["choices"].splitlines() == ["(a) wooded area", "(b) desert", "(c) wooded area", "(d) city", "(e) sky"]
    assert cqa.model_input(example("q", choices=CHOICES)) == "q\nAnswer Choices:\n" + cqa.format_choices(CHOICES)
