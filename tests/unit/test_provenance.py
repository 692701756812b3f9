"""What a report says it ran at and on: git from git's own files, CI from its variables, a label."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pytest_hwbench.hardware.inventory import system_identity
from pytest_hwbench.provenance import ci_identity, commit_time, git_revision, run_identity
from pytest_hwbench.report.model import machine_label

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="the git command makes repos")


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main",
         *args],
        cwd=cwd, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def _committed(repo: Path, rev: str = "HEAD") -> str:
    """The committer date of `rev` as git prints it, in UTC (what the report records)."""
    stamp = int(_git(repo, "log", "-1", "--format=%ct", rev))
    return datetime.fromtimestamp(stamp, tz=timezone.utc).isoformat(timespec="seconds")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "tests").mkdir(parents=True)
    _git(root, "init", "-q")
    (root / "tests" / "test_a.py").write_text("def test_a():\n    pass\n")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "first")
    return root


@needs_git
def test_a_branch_and_its_commit_from_a_subfolder(repo: Path) -> None:
    head = _git(repo, "rev-parse", "HEAD")
    when = _committed(repo, head)
    assert git_revision(repo / "tests") == {"commit": head, "branch": "main", "committed": when}
    _git(repo, "checkout", "-q", "-b", "feature/energy")
    assert git_revision(repo) == {"commit": head, "branch": "feature/energy", "committed": when}


@needs_git
def test_packed_refs_a_detached_head_and_a_worktree(repo: Path, tmp_path: Path) -> None:
    first = _git(repo, "rev-parse", "HEAD")
    _git(repo, "pack-refs", "--all")  # what clones and gc leave: no loose ref file
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()
    assert git_revision(repo) == {"commit": first, "branch": "main", "committed": _committed(repo)}
    _git(repo, "commit", "-q", "--allow-empty", "-m", "second", "--date", "2026-11-30T10:00Z")
    second = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-q", first)  # CI checks a commit out like this
    assert git_revision(repo) == {"commit": first, "branch": None, "committed": _committed(repo)}
    tree = tmp_path / "tree"
    _git(repo, "worktree", "add", "-q", "-b", "side", str(tree), second)
    assert (tree / ".git").is_file()  # "gitdir: <repo>/.git/worktrees/tree"
    assert git_revision(tree) == {
        "commit": second, "branch": "side", "committed": _committed(repo, second)
    }  # fmt: skip


@needs_git
def test_the_commit_time_is_read_from_loose_objects_and_from_packs(repo: Path) -> None:
    env = {**os.environ, "GIT_COMMITTER_DATE": "2026-11-30T10:00:00+0200"}
    for message in ("second", "third"):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
             "--allow-empty", "-m", message],
            cwd=repo, env=env, check=True,
        )  # fmt: skip
    head = _git(repo, "rev-parse", "HEAD")
    common = repo / ".git"
    assert (common / "objects" / head[:2] / head[2:]).is_file()  # loose, as just committed
    assert commit_time(common, head) == datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)
    _git(repo, "gc", "-q", "--prune=now")  # what a clone (or CI's shallow fetch) leaves: packs
    assert not (common / "objects" / head[:2] / head[2:]).exists()
    assert commit_time(common, head) == datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)
    first = _git(repo, "rev-list", "--max-parents=0", "HEAD")
    assert commit_time(common, first) == datetime.fromisoformat(_committed(repo, first))
    assert commit_time(common, "0" * 40) is None  # an object the repository lacks
    # Deltas named by their base's name rather than its offset (what older gits and thin
    # fetches leave), recomputed (-f) so that commits become deltas of each other.
    _git(repo, "-c", "repack.useDeltaBaseOffset=false", "repack", "-q", "-a", "-d", "-f")
    for line in _git(repo, "log", "--format=%H %ct").splitlines():
        sha, stamp = line.split()
        assert commit_time(common, sha) == datetime.fromtimestamp(int(stamp), tz=timezone.utc)


@needs_git
def test_a_new_repository_has_a_branch_and_no_commit(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    assert git_revision(tmp_path) == {"commit": None, "branch": "main", "committed": None}


def test_outside_a_checkout_and_ci_the_run_section_is_empty(tmp_path: Path) -> None:
    assert git_revision(tmp_path) is None  # pytest's temporary folders are in no repository
    assert run_identity(tmp_path, environ={}) == {}
    assert run_identity(tmp_path, environ={"CI": "1"}) == {"ci": {"service": "unknown"}}


def test_github_actions_gives_the_run_its_attempt_and_a_link() -> None:
    env = {
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_RUN_ID": "1234",
        "GITHUB_RUN_ATTEMPT": "2",
        "GITHUB_WORKFLOW": "gpu",
        "GITHUB_JOB": "h100",
        "GITHUB_REPOSITORY": "acme/model",
        "GITHUB_SHA": "a" * 40,
        "GITHUB_REF_NAME": "main",
        "RUNNER_NAME": "gpu-runner-7",
    }
    assert ci_identity(env) == {
        "service": "github-actions",
        "run_id": "1234",
        "attempt": "2",
        "workflow": "gpu",
        "job": "h100",
        "repository": "acme/model",
        "commit": "a" * 40,
        "branch": "main",
        "runner": "gpu-runner-7",
        "url": "https://github.com/acme/model/actions/runs/1234",
    }


def test_gitlab_an_unknown_ci_and_none() -> None:
    gitlab = ci_identity(
        {"GITLAB_CI": "true", "CI_PIPELINE_ID": "77", "CI_JOB_NAME": "a100",
         "CI_JOB_URL": "https://gitlab.example/j/9"}
    )  # fmt: skip
    assert gitlab == {
        "service": "gitlab-ci",
        "run_id": "77",
        "job": "a100",
        "url": "https://gitlab.example/j/9",
    }
    assert ci_identity({"CI": "true"}) == {"service": "unknown"}
    assert ci_identity({"CI": "false"}) is None
    assert ci_identity({}) is None


def test_the_firmware_names_the_machine(tmp_path: Path) -> None:
    (tmp_path / "sys_vendor").write_text("Amazon EC2\n")
    (tmp_path / "product_name").write_text("p5.48xlarge\n")
    assert system_identity(tmp_path) == {"vendor": "Amazon EC2", "product": "p5.48xlarge"}
    (tmp_path / "product_name").write_text("To Be Filled By O.E.M.\n")  # a board left blank
    assert system_identity(tmp_path) == {"vendor": "Amazon EC2"}
    assert system_identity(tmp_path / "absent") == {}


def _backend(name: str, device_type: str, *devices: tuple[str, str | None]) -> dict[str, object]:
    return {
        "name": name,
        "torch_device_type": device_type,
        "available": True,
        "devices": [
            {"properties": {"name": device, "driver_version": driver}} for device, driver in devices
        ],
    }


def test_a_label_from_the_accelerators_else_the_cpu() -> None:
    cpu = _backend("cpu", "cpu", ("Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", None))
    gpus = _backend("cuda", "cuda", *[("NVIDIA H100 80GB HBM3", "580.65.06")] * 8)
    assert machine_label({"backends": [cpu, gpus]}) == "H100 80GB HBM3 \u00d78 \u00b7 driver 580"
    assert machine_label({"backends": [cpu]}) == "Xeon Platinum 8481C"
    mps = _backend("mps", "mps", ("Apple M2 Max", None))
    assert machine_label({"backends": [cpu, mps]}) == "M2 Max \u00d71"
    absent = {**gpus, "available": False}
    assert machine_label({"host": "box", "backends": [absent]}) == "box"
    hosts = {"hosts": {"a/gw0": {"backends": [cpu, gpus]}, "a/gw1": {"backends": [cpu, gpus]}}}
    assert machine_label(hosts) == "H100 80GB HBM3 \u00d78 \u00b7 driver 580"  # said once
