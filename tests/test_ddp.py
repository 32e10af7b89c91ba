"""Data-parallel training (DDP, ``torchrun``, gloo on CPU) finishes and is exact: every rank takes the
same decisions, every row is used exactly once per epoch across ranks, the logged losses and example
counts are global, and the losses are those of one process on the same global batches."""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.student.distributed import rank_slice
from pipeline.training.loop import Evaluator, train
from pipeline.training.loss import multitask_loss
from support import ROOT
from support.cli import cli, edit_params, ok
from support.tiny import Stub, cfg, small_enc, tiny_model

pytestmark = pytest.mark.slow  # torchrun processes

TESTS = Path(__file__).resolve().parent

N_ROWS = 17  # global batch 2 x 4 = 8: 3 global batches an epoch, the last of one row (rank 1 gets none)
SCORES = (0.2, 0.9, 0.4, 0.3)  # the stub's validation accuracies: the second evaluation is the best

WORKER = '''
"""Under torchrun: the tiny T5 with both forwards; writes what each rank saw and logged."""
import json, sys
from pathlib import Path

import torch

import pipeline.training.loop as loop
from pipeline.student.distributed import dist_info
from pipeline.training.loop import Evaluator, train
from support.tiny import Stub, cfg, small_enc, tiny_model, weights_hash

out, n_rows = Path(sys.argv[1]), int(sys.argv[2])
scores = tuple(float(x) for x in sys.argv[3].split(","))
torch.set_num_threads(1)
rank, world, _ = dist_info()
for forward in ("separate", "joint"):
    parts, real = [], loop.rank_slice

    def recording(batch, r, w):
        part = real(batch, r, w)
        parts.append(part)
        return part

    loop.rank_slice = recording
    stub = Stub(scores=scores)
    model, res = train(tiny_model(), small_enc(n_rows), cfg(4, 1, batch_size=4, grad_accum=2, forward=forward), 0,
                       Evaluator(valid=stub))
    loop.rank_slice = real
    (out / f"rank{rank}_{forward}.json").write_text(json.dumps({
        "world": world, "parts": parts, "history": res.history, "evals": res.evals, "best": res.best,
        "steps": res.steps, "examples": res.examples, "model": weights_hash(model), "eval_hashes": stub.hashes}))
'''

RUN = "cqa-palm-cot1-base-teacher-k1-m0-s42"  # cot1 on CQA in the offline profile's tables (runs.yaml)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(env or os.environ)
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", MASTER_ADDR="127.0.0.1", GLOO_SOCKET_IFNAME="lo")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------------------ without processes
def test_rank_slices_cover_a_batch_once_as_evenly_as_possible():
    for n in range(0, 20):
        for world in (1, 2, 3, 4):
            batch = list(range(100, 100 + n))
            parts = [rank_slice(batch, r, world) for r in range(world)]
            assert sum(parts, []) == batch
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize("forward", ["separate", "joint"])
def test_parts_with_global_token_counts_add_up_to_the_whole_batch_loss_and_gradient(forward):
    from pipeline.student.batches import collate

    torch.set_num_threads(1)
    enc = small_enc(12)
    m = tiny_model()
    whole = list(range(6))  # rows 0 and 3 have no rationale
    parts = [[0, 3], [1, 2], [4, 5], []]  # a part without rationales, and an empty one (weight 0)
    loss, _, _ = multitask_loss(m, collate(enc, whole, 0), 0.3, 0, forward)
    loss.backward()
    ref = {k: p.grad.clone() for k, p in m.named_parameters()}
    m.zero_grad()
    denoms = (sum(len(enc.pred_target[i]) for i in whole),
              sum(len(enc.expl_target[i]) for i in whole if enc.expl_target[i] is not None))
    total = 0.0
    for part in parts:
        w = 1.0 if part else 0.0
        lp, _, _ = multitask_loss(m, collate(enc, part or whole[:1], 0), 0.3, 0, forward, denoms)
        (w * lp).backward()
        total += w * float(lp.detach())
    assert total == pytest.approx(float(loss.detach()), abs=1e-5)
    for k, p in m.named_parameters():
        torch.testing.assert_close(p.grad, ref[k], atol=1e-6, rtol=1e-4)
    # label-only whole batch: the label loss alone, also in parts
    lab = [0, 3, 6]
    with torch.no_grad():
        loss = multitask_loss(m, collate(enc, lab, 0), 0.3, 0, forward)[0]
        d = (sum(len(enc.pred_target[i]) for i in lab), 0)
        parts_sum = sum(float(multitask_loss(m, collate(enc, p, 0), 0.3, 0, forward, d)[0]) for p in ([0], [3, 6]))
    assert parts_sum == pytest.approx(float(loss), abs=1e-5)


# ------------------------------------------------------------------------------------ torchrun, 2 processes
@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    (tmp / "worker.py").write_text(WORKER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS)]), TQDM_DISABLE="1")
    r = torchrun([str(tmp / "worker.py"), str(tmp), str(N_ROWS), ",".join(map(str, SCORES))], ROOT, env)
    assert r.returncode == 0, f"torchrun exited {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
    return {(rank, fw): json.loads((tmp / f"rank{rank}_{fw}.json").read_text())
            for rank in (0, 1) for fw in ("separate", "joint")}


@pytest.mark.parametrize("forward", ["separate", "joint"])
def test_ddp_uses_every_row_once_per_epoch_and_logs_global_counts(ddp_run, forward):
    r0, r1 = ddp_run[0, forward], ddp_run[1, forward]
    assert r0["world"] == r1["world"] == 2
    n_batches, epochs = math.ceil(N_ROWS / 8), 4
    assert r0["steps"] == r1["steps"] == epochs * n_batches // 2  # grad_accum 2: 6 steps, the same on both ranks
    assert len(r0["parts"]) == len(r1["parts"]) == epochs * n_batches
    for e in range(epochs):
        rows = [i for r in (r0, r1) for part in r["parts"][e * n_batches:(e + 1) * n_batches] for i in part]
        assert sorted(rows) == list(range(N_ROWS)), f"epoch {e}: rows dropped or doubled"
    sizes = [(len(a), len(b)) for a, b in zip(r0["parts"], r1["parts"])]
    assert all(abs(a - b) <= 1 for a, b in sizes) and (1, 0) in sizes  # even split; an empty part ran too
    # the log is global and identical on both ranks
    assert r0["history"] == r1["history"]
    assert [h["step"] for h in r0["history"]] == list(range(1, 7))
    assert sum(h["examples"] for h in r0["history"]) == r0["examples"] == r1["examples"] == epochs * N_ROWS


@pytest.mark.parametrize("forward", ["separate", "joint"])
def test_ddp_selects_on_rank_0_and_returns_the_selected_weights(ddp_run, forward):
    r0, r1 = ddp_run[0, forward], ddp_run[1, forward]
    # select_every 1 over 4 epochs of 3 global batches, 2 per step: points at 3, 6, 9, 12 batches
    assert [e["step"] for e in r0["evals"]] == [2, 3, 5, 6]
    assert [e["valid_accuracy"] for e in r0["evals"]] == list(SCORES)
    assert r1["evals"] == [] and r1["best"] is None
    assert r0["best"] == r0["evals"][1]
    assert r0["model"] == r0["eval_hashes"][1] != r0["eval_hashes"][-1]


@pytest.mark.parametrize("forward", ["separate", "joint"])
def test_ddp_losses_match_one_process_on_the_same_global_batches(ddp_run, forward):
    torch.set_num_threads(1)
    c = cfg(4, 1, batch_size=8, grad_accum=2, forward=forward)  # one process, batch 2 x 4
    _, ref = train(tiny_model(), small_enc(N_ROWS), c, 0, Evaluator(valid=Stub(scores=SCORES)))
    got = ddp_run[0, forward]["history"]
    assert [h["examples"] for h in got] == [h["examples"] for h in ref.history]
    assert [(e["step"], e["epoch"]) for e in ddp_run[0, forward]["evals"]] == [(e["step"], e["epoch"]) for e in ref.evals]
    diff = max(abs(a[k] - b[k]) for a, b in zip(got, ref.history) for k in ("loss", "pred_loss", "expl_loss"))
    print(f"{forward}: max |2-process - 1-process| loss difference over {len(got)} steps: {diff:.2e}")
    assert diff < 1e-5


# ------------------------------------------------------------------------------------ the real CLI stage
def _tiny_ddp(doc):
    t = doc["train"]
    t["batch_size"] = 4
    t["max_steps"] = None
    t["select_every"] = 0.5
    t["paper_protocol"] = False
    t["log_every"] = 1
    t["select_max_new_tokens"] = 4
    doc["datasets"]["cqa"]["limit"] = {"train": 20, "valid": 4, "test": 4}
    doc["methods"]["cot1"]["epochs"] = 2


@pytest.mark.e2e
def test_torchrun_train_stage_finishes_on_two_processes(cli_project):
    edit_params(cli_project, _tiny_ddp)
    for stage in (["prepare", "--dataset", "cqa"], ["teach", "--dataset", "cqa"],
                  ["assemble", "cqa-palm-teacher-k1-m0"]):
        ok(cli(cli_project, *stage))
    env = dict(os.environ, DVC_ROOT=str(cli_project), PYTHONDONTWRITEBYTECODE="1", TQDM_DISABLE="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    r = torchrun(["-m", "pipeline", "stage2", RUN], cli_project, env)
    assert r.returncode == 0, f"torchrun exited {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
    out = cli_project / "models" / RUN / "stage2"
    log = json.loads((cli_project / "metrics" / "train" / RUN / "stage2.json").read_text())
    assert (out / "config.json").exists() and log["world_size"] == 2
    rows = log["rows"]
    n_batches = math.ceil(rows / 8)
    assert log["steps"] == 2 * n_batches
    assert sum(h["examples"] for h in log["history"]) == 2 * rows  # every row once per epoch, across ranks
    steps = [e["step"] for e in log["evals"]]
    assert steps == sorted(set(steps)) and steps[-1] == log["steps"] and len(steps) >= 4
    assert log["selected"]["step"] in steps and log["selected"] in log["evals"]
    assert not (cli_project / ".checkpoints/cqa/cot1/stage2").exists()
    assert r.stdout.count("selected step") == 1  # one writer: rank 0
