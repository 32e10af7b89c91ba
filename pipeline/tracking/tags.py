"""The tags runs share: the source (git commit, remote, branch, user) the MLflow UI shows, DVC's stage
and experiment from the environment, the run names, and the tables a run serves (refreshed by
``_retag_tables``).

Outside an experiment (``dvc repro``, or by hand) the git commit logged is the one checked out when
the run is *logged* (by the report stage); its training and evaluation may have run at an earlier
commit, or been restored from DVC's run-cache (their code is pinned by dvc.lock, not by MLflow).
Inside ``dvc exp run`` DVC sets ``DVC_EXP_NAME`` and ``DVC_EXP_BASELINE_REV`` in every stage: the
runs are then named ``[<experiment>] <name>``, tagged ``dvc.exp_name`` and ``dvc.baseline_rev``, and
their source is the experiment: its baseline commit (the experiment's own commit is made after its
stages finish), its git ref ``refs/exps/<rev[:2]>/<rev[2:]>/<experiment>`` as the branch, and the
experiment before the stage in the Source column (``main:lr2:evaluate@<run>``).
"""
from __future__ import annotations

import getpass
import os
import subprocess
from functools import lru_cache
from typing import Any, Iterable, Optional
from urllib.parse import urlsplit, urlunsplit

from ..core.paths import git_commit, project_root


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                              cwd=project_root()).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return url


@lru_cache(maxsize=1)
def _repo() -> tuple[str, str]:
    """(remote URL without credentials, branch); empty when unknown."""
    branch = _git("rev-parse", "--abbrev-ref", "HEAD")
    return _without_credentials(_git("config", "--get", "remote.origin.url")), "" if branch == "HEAD" else branch


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return ""


def _experiment() -> tuple[str, str]:
    """(DVC experiment name, its baseline commit) from ``dvc exp run``'s environment; empty outside one."""
    return os.environ.get("DVC_EXP_NAME", "").strip(), os.environ.get("DVC_EXP_BASELINE_REV", "").strip()


def exp_ref(name: str, baseline: str) -> str:
    """The git ref DVC keeps an experiment under (``dvc.repo.experiments.refs.ExpRefInfo``); empty
    without a baseline commit (a full sha)."""
    ok = name and len(baseline) == 40 and all(c in "0123456789abcdef" for c in baseline.lower())
    return f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}" if ok else ""


def _run_name(name: str) -> str:
    """``name``, or ``[<experiment>] name`` inside ``dvc exp run`` (as ``dvc exp show`` writes it; first,
    because the runs table cuts a name after about 17 characters)."""
    exp, _ = _experiment()
    return f"[{exp}] {name}" if exp else name


def _source_tags(entry_point: str) -> dict[str, str]:
    """Tags the MLflow UI reads for its Source and Version columns and the run page.

    With ``mlflow.source.type`` PROJECT the UI shows ``<basename of source.name>:<entry point>``
    (extension dropped: a name like ``dvc.yaml:evaluate@x`` would show as ``dvc``), and the first
    characters of ``mlflow.source.git.commit`` as the version (a link when the name is a GitHub,
    GitLab or Bitbucket URL). So the name is the repository (remote URL, else the project folder)
    and the entry point the DVC stage: ``main:evaluate@svamp-gpt35-cot5_se-base-teacher-k5-m5-s42``;
    in an experiment the experiment comes first (``main:lr2:evaluate@...``, so a cut column still
    shows it), the commit is its baseline and the branch its git ref."""
    remote, branch = _repo()
    exp, baseline = _experiment()
    head = git_commit()
    tags = {
        "mlflow.source.type": "PROJECT",
        "mlflow.source.name": remote or str(project_root()),
        "mlflow.project.entryPoint": f"{exp}:{entry_point}" if exp else entry_point,
        "mlflow.source.git.commit": (baseline or head) if exp else head,
        "mlflow.source.git.repoURL": remote,
        "mlflow.source.git.branch": (exp_ref(exp, baseline) or branch) if exp else branch,
        "mlflow.user": _user(),
        "git_commit": head,  # checked out when logged (in a queued experiment: DVC's temporary commit)
    }
    return tags


def _dvc_env_tags() -> dict[str, str]:
    exp, baseline = _experiment()
    return {"dvc_stage": os.environ.get("DVC_STAGE", ""), "dvc.exp_name": exp, "dvc.baseline_rev": baseline,
            "dvc.exp_ref": exp_ref(exp, baseline) if exp else ""}


def _table_tags(tables: Iterable[str]) -> dict[str, str]:
    tables = list(tables)
    return {"tables": ",".join(tables), **{f"table.{t}": "yes" for t in tables}}


def _clean(tags: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in tags.items() if v is not None and str(v) != ""}


def _retag_tables(client, run_id: str, tables: list[str], current: Optional[dict[str, str]] = None) -> None:
    """Set a run's ``tables``/``table.<name>`` tags to ``tables``, deleting the stale ones (``current``:
    the run's tags, when the caller has them already; read from the store otherwise)."""
    from mlflow.entities import RunTag

    from .store import _log_batch

    current = client.get_run(run_id).data.tags if current is None else current
    want = _table_tags(tables)
    for k in current:
        if (k.startswith("table.") or k == "tables") and not want.get(k):
            client.delete_tag(run_id, k)
    _log_batch(client, run_id, tags=[RunTag(k, v) for k, v in want.items() if v and current.get(k) != v])
