"""Training resumes from its last checkpoint after a SIGKILL, and the resumed run is the run that
would have happened without the interruption (same data order, optimiser state and RNG)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.cli import cli, edit_params, ok

pytestmark = pytest.mark.slow  # SIGKILLs a training process and resumes it

RUN = "cqa-palm-cot1-base-teacher-k1-m0-s42"  # cot1 on CQA in the offline profile's tables (runs.yaml)


def _tiny(doc):
    t = doc["train"]
    t["max_steps"] = 16
    t["save_every_steps"] = 1
    t["select_every"] = 0
    t["paper_protocol"] = False
    t["log_every"] = 1
    doc["datasets"]["cqa"]["limit"] = {"train": 64, "valid": 8, "test": 8}
    doc["methods"]["cot1"]["epochs"] = 20


def _history(proj: Path) -> list:
    return json.loads((proj / f"metrics/train/{RUN}/stage2.json").read_text())


def test_train_resumes_after_sigkill(cli_project):
    edit_params(cli_project, _tiny)
    for stage in (["prepare", "--dataset", "cqa"], ["teach", "--dataset", "cqa"],
                  ["assemble", "cqa-palm-teacher-k1-m0"]):
        ok(cli(cli_project, *stage))

    # the uninterrupted run, for reference
    ok(cli(cli_project, "stage2", RUN))
    straight = _history(cli_project)
    straight_weights = (cli_project / f"models/{RUN}/stage2/model.safetensors").read_bytes()
    assert straight["steps"] == 16 and straight["resumed_from_step"] == 0

    env = dict(os.environ, DVC_ROOT=str(cli_project), TOKENIZERS_PARALLELISM="false")
    env.pop("MLFLOW_TRACKING_URI", None)
    p = subprocess.Popen([sys.executable, "-m", "pipeline", "stage2", RUN],
                         cwd=cli_project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = cli_project / f".checkpoints/{RUN}/stage2/state.pt"
    deadline = time.time() + 120
    import torch

    while time.time() < deadline:
        if state.exists():
            try:
                if torch.load(state, map_location="cpu", weights_only=False)["step"] >= 4:
                    break
            except Exception:  # caught mid-rename
                pass
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    killed_at = torch.load(state, map_location="cpu", weights_only=False)["step"]
    assert 4 <= killed_at < 16, "the run finished before it could be killed"

    ok(cli(cli_project, "stage2", RUN))
    resumed = _history(cli_project)
    assert resumed["resumed_from_step"] >= killed_at
    assert resumed["steps"] == 16
    assert not state.exists(), "resume state is removed after a successful run"
    # the same run as without the interruption, exactly: the same per-step losses, bit for bit, and
    # the same checkpoint bytes (the resume state holds the model, optimiser, scheduler and RNG states)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in straight["history"]]
    assert [h["pred_loss"] for h in resumed["history"]] == [h["pred_loss"] for h in straight["history"]]
    assert (cli_project / f"models/{RUN}/stage2/model.safetensors").read_bytes() == straight_weights
