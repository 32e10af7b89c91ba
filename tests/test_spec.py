"""params.yaml, the profiles and the generated JSON Schemas: validation, sync, error messages."""
from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML

from pipeline.core.errors import PipelineError
from pipeline.core.records import all_schemas
from pipeline.schemas import render
from pipeline.core.spec import Params, load_params
from support.cli import rt_dump, rt_load

ROOT = Path(__file__).resolve().parents[1]
PROFILES = sorted((ROOT / "profiles").glob("*.yaml"))


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def _load_error(path: Path) -> str:
    """The PipelineError message of loading ``path`` (which must fail)."""
    with pytest.raises(PipelineError) as ei:
        load_params(path)
    return str(ei.value)


def _line_no(text: str, pattern: str, after: int = 0) -> int:
    """1-based number of the first line matching ``pattern`` after line ``after``."""
    for i, line in enumerate(text.splitlines(), 1):
        if i > after and re.match(pattern, line):
            return i
    raise AssertionError(f"no line matches {pattern!r}")


@pytest.fixture
def base_text() -> str:
    return (ROOT / "params.yaml").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- valid files
def test_params_yaml_validates():
    p = load_params(ROOT / "params.yaml")
    assert isinstance(p, Params)
    assert p.tables and p.students


def test_profiles_exist():
    assert {p.stem for p in PROFILES} >= {"paper", "offline"}


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_profile_validates(path):
    p = load_params(path)
    assert p.profile == path.stem


def test_offline_profile_is_offline():
    p = load_params(ROOT / "profiles" / "offline.yaml")
    for name, ds in p.datasets.items():
        assert ds.source.kind == "local", name
        for t in ds.teachers:
            assert p.teacher(name, t).backend == "replay", (name, t)


def test_paper_profile_matches_paper_settings():
    p = load_params(ROOT / "profiles" / "paper.yaml")
    assert p.train.lr == 5e-5 and p.train.batch_size == 16 and p.train.alpha == 0.5
    assert p.methods["cot5_se"].cots == 5 and p.methods["cot5_se"].self_evals == 5
    assert "cot5_se" in p.tables["main"].values["method"]
    assert p.students["base"].id == "google/t5-v1_1-base" and not p.students["base"].from_config


# --------------------------------------------------------------------------- schemas in sync
@pytest.mark.parametrize("name", sorted(all_schemas()))
def test_schema_file_in_sync(name):
    path = ROOT / "schemas" / f"{name}.schema.json"
    assert path.exists(), f"{path} missing: run `python -m pipeline schemas`"
    assert path.read_text(encoding="utf-8") == render(all_schemas()[name]), (
        f"{path} is stale: run `python -m pipeline schemas`")


def test_no_orphan_schema_files():
    names = {p.name[: -len(".schema.json")] for p in (ROOT / "schemas").glob("*.schema.json")}
    assert names == set(all_schemas())


@pytest.mark.parametrize("path", [ROOT / "params.yaml", *PROFILES], ids=lambda p: p.name)
def test_params_match_json_schema(path):
    schema = json.loads((ROOT / "schemas" / "params.schema.json").read_text(encoding="utf-8"))
    data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    cls(schema).validate(data)


def test_json_schema_rejects_unknown_key(base_text):
    schema = json.loads((ROOT / "schemas" / "params.schema.json").read_text(encoding="utf-8"))
    data = YAML(typ="safe").load(base_text)
    data["train"]["lrr"] = 1
    cls = jsonschema.validators.validator_for(schema)
    with pytest.raises(jsonschema.ValidationError):
        cls(schema).validate(data)


# --------------------------------------------------------------------------- error messages
def test_unknown_key_names_key_and_line(tmp_path, base_text):
    train_line = _line_no(base_text, r"^train:\s*$")
    lr_line = _line_no(base_text, r"^  lr:", after=train_line)
    lines = base_text.splitlines(keepends=True)
    lines.insert(lr_line, "  lrr: 1\n")  # becomes line lr_line + 1
    path = _write(tmp_path, "".join(lines))
    msg = _load_error(path)
    assert "train.lrr" in msg
    assert "unknown key" in msg
    assert f"params.yaml:{lr_line + 1}:" in msg
    assert str(path) in msg


def test_nonpositive_lr(tmp_path, base_text):
    train_line = _line_no(base_text, r"^train:\s*$")
    lr_line = _line_no(base_text, r"^  lr:", after=train_line)
    lines = base_text.splitlines(keepends=True)
    lines[lr_line - 1] = "  lr: 0\n"
    path = _write(tmp_path, "".join(lines))
    msg = _load_error(path)
    assert "train.lr: must be > 0" in msg
    assert f"params.yaml:{lr_line}:" in msg


def test_bad_yaml_names_line(tmp_path, base_text):
    path = _write(tmp_path, base_text + "oops: [unclosed\nmore: 1\n")
    with pytest.raises(PipelineError) as ei:
        load_params(path)
    assert "not valid YAML" in str(ei.value)
    assert re.search(r"params\.yaml:\d+:", str(ei.value))


def test_missing_params_file(tmp_path):
    with pytest.raises(PipelineError, match="not found"):
        load_params(tmp_path / "params.yaml")


def test_error_message_is_one_line(tmp_path, base_text):
    doc = rt_load(base_text)
    doc["train"]["lr"] = -1
    doc["train"]["batch_size"] = 0
    path = _write(tmp_path, rt_dump(doc))
    msg = _load_error(path)
    assert "\n" not in msg
    assert "train.lr" in msg and "train.batch_size" in msg


# --------------------------------------------------------------------------- YAML 1.2 (as DVC reads it)
def test_yaml12_exponent_is_a_float(tmp_path, base_text):
    # YAML 1.1 (PyYAML) reads `1e-5` as a string; DVC (ruamel, YAML 1.2) reads a float.
    from pipeline.core.spec import _yaml

    assert isinstance(_yaml().load("lr: 1e-5\n")["lr"], float)
    assert isinstance(YAML(typ="safe").load("lr: 1e-5\n")["lr"], float)
    train_line = _line_no(base_text, r"^train:\s*$")
    lr_line = _line_no(base_text, r"^  lr:", after=train_line)
    lines = base_text.splitlines(keepends=True)
    lines[lr_line - 1] = "  lr: 1e-5\n"
    p = load_params(_write(tmp_path, "".join(lines)))
    assert isinstance(p.train.lr, float) and p.train.lr == 1e-5



# --------------------------------------------------------------------------- task names: the registry's
def test_a_dataset_task_must_be_a_name_of_the_task_registry(tmp_path, base_text, monkeypatch):
    """The task names come from pipeline/tasks/__init__.py's TASKS (the CLI passes them), not from a
    list in the spec: an unknown one is one line naming the key and the registry's names, and a task
    added to the registry is accepted with no change to the spec."""
    from pipeline import tasks

    bad = re.sub(r"(?m)^(    task: )svamp$", r"\1svmap", base_text, count=1)
    path = _write(tmp_path, bad)
    with pytest.raises(PipelineError) as ei:
        load_params(path, tasks=tasks.TASKS)
    msg = str(ei.value)
    assert "datasets.svamp.task" in msg and "unknown task 'svmap'" in msg and "anli, cqa, svamp" in msg, msg
    assert f"{path}:{_line_no(bad, r'    task: svmap')}" in msg, msg
    monkeypatch.setitem(tasks.TASKS, "svmap", tasks.TASKS["svamp"])
    assert load_params(path, tasks=tasks.TASKS).datasets["svamp"].task == "svmap"


# --------------------------------------------------------------------------- typos: did you mean, tags, value lines
OFFLINE = ROOT / "profiles/offline.yaml"


def test_a_misspelled_section_says_what_it_meant(tmp_path, base_text):
    train_line = _line_no(base_text, r"^train:\s*$")
    lines = base_text.splitlines(keepends=True)
    lines.insert(train_line - 1, "trian:\n  lr: 0.002\n")  # `trian:` is now line train_line
    path = _write(tmp_path, "".join(lines))
    assert _load_error(path) == f"{path}:{train_line}: trian: unknown key (did you mean 'train'?)"


@pytest.mark.parametrize("typo,meant", [("learning_rate", "lr"), ("batchsize", "batch_size"), ("zzz", None)])
def test_an_unknown_key_suggests_its_closest_sibling(tmp_path, base_text, typo, meant):
    train_line = _line_no(base_text, r"^train:\s*$")
    lines = base_text.splitlines(keepends=True)
    lines.insert(train_line, f"  {typo}: 1\n")
    msg = _load_error(_write(tmp_path, "".join(lines)))
    hint = f" (did you mean {meant!r}?)" if meant else ""
    assert msg.endswith(f":{train_line + 1}: train.{typo}: unknown key{hint}"), msg


def test_a_missing_or_misspelled_discriminator_is_named_in_plain_words(tmp_path):
    text = OFFLINE.read_text()
    kind = _line_no(text, r"^\s+kind: local")
    missing = text.splitlines(keepends=True)
    del missing[kind - 1]
    msg = _load_error(_write(tmp_path, "".join(missing)))
    assert re.search(r"params\.yaml:\d+: datasets\.svamp\.source\.kind: missing; one of hub, local, synthetic$", msg), msg
    bad = _write(tmp_path, text.replace("kind: local", "kind: locl", 1))
    assert _load_error(bad) == (f"{bad}:{kind}: datasets.svamp.source.kind: 'locl' is not one of hub, local, synthetic "
                                "(did you mean 'local'?)")


def test_a_bad_value_in_a_list_is_reported_at_its_own_line(tmp_path):
    text = OFFLINE.read_text()
    values = _line_no(text, r"^    values:")
    item = _line_no(text, r"^      - cot1$", after=values)
    lines = text.splitlines(keepends=True)
    lines[item - 1] = lines[item - 1].replace("cot1", "cot1x")
    msg = _load_error(_write(tmp_path, "".join(lines)))
    assert f"params.yaml:{item}: tables.main.values.method: 'cot1x' is not a key of methods (did you mean 'cot1'?)" in msg
    assert item > _line_no(text, r"^      method:$", after=values) + 1  # the value's line, not its key's


def test_student_config_overrides_are_t5config_fields(tmp_path):
    from pipeline.stages.spec import load
    from pipeline.tasks import TASKS

    text = OFFLINE.read_text()
    at = _line_no(text, r"^      d_model: 32")
    path = _write(tmp_path, text.replace("      d_model: 32", "      num_layer: 2\n      d_model: 32", 1))
    load_params(path)  # the schema alone does not know T5Config's fields ...
    with pytest.raises(PipelineError) as ei:  # ... the spec stage (and plan) does
        load(str(path), TASKS)
    assert str(ei.value) == (f"{path}:{at}: students.small.config_overrides.num_layer: not a field of T5Config "
                             "(did you mean 'num_layers'?)")
    load(str(OFFLINE), TASKS)  # every real override is a field


def test_config_overrides_need_from_config(tmp_path):
    text = OFFLINE.read_text()
    path = _write(tmp_path, text.replace("from_config: true", "from_config: false", 1))
    msg = _load_error(path)
    assert re.search(r"params\.yaml:\d+: students\.small\.config_overrides: only with from_config: true", msg), msg
