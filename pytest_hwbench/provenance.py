"""What a run was of: the git commit and branch it ran at, and the CI job that ran it.

Read offline and cheaply, for the report's ``run`` section: git's own files (no ``git``
process: HEAD, loose refs, packed-refs, worktrees' ``.git`` files), and the variables each CI
service documents for its jobs. A leaf: it imports nothing of ours.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

__all__ = ["CI_SERVICES", "CIService", "ci_identity", "git_revision", "run_identity"]

_SHA_RE = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")  # SHA-1, or SHA-256 repositories


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _git_dirs(start: Path) -> tuple[Path, Path] | None:
    """The git directory of the checkout above `start`, and the repository's common one.

    A worktree or submodule has a ``.git`` file (``gitdir: ...``); a worktree's git directory
    names the repository's shared one in ``commondir``, where branches live.
    """
    for folder in (start, *start.parents):
        dot_git = folder / ".git"
        if dot_git.is_dir():
            return dot_git, dot_git
        if dot_git.is_file():
            text = _read(dot_git) or ""
            if not text.startswith("gitdir:"):
                return None
            git_dir = (folder / text.removeprefix("gitdir:").strip()).resolve()
            common = _read(git_dir / "commondir")
            return git_dir, (git_dir / common).resolve() if common else git_dir
    return None


def _resolve_ref(common: Path, git_dir: Path, ref: str) -> str | None:
    """The commit `ref` ("refs/heads/main") points at: a loose ref file, else packed-refs."""
    for base in (git_dir, common):
        sha = _read(base / ref)
        if sha is not None and _SHA_RE.match(sha):
            return sha
    packed = _read(common / "packed-refs") or ""
    for line in packed.splitlines():
        sha, _, name = line.partition(" ")
        if name == ref and _SHA_RE.match(sha):
            return sha
    return None


def git_revision(start: str | os.PathLike[str]) -> dict[str, str | None] | None:
    """``{"commit": sha, "branch": name or None}`` of the checkout holding `start`, or None.

    The branch is None on a detached HEAD (CI checks out a commit so); the commit is None for
    a branch with no commit yet.
    """
    dirs = _git_dirs(Path(start).resolve())
    if dirs is None:
        return None
    git_dir, common = dirs
    head = _read(git_dir / "HEAD")
    if head is None:
        return None
    if head.startswith("ref:"):
        ref = head.removeprefix("ref:").strip()
        return {
            "commit": _resolve_ref(common, git_dir, ref),
            "branch": ref.removeprefix("refs/heads/"),
        }
    return {"commit": head if _SHA_RE.match(head) else None, "branch": None}


class CIService(NamedTuple):
    """A CI service: the variable that says a job runs there, and where it keeps the rest."""

    name: str
    marker: str
    #: Our field -> the service's variable (documented by the service).
    fields: Mapping[str, str]


#: CI services by their documented job variables.
CI_SERVICES: tuple[CIService, ...] = (
    CIService(
        "github-actions",
        "GITHUB_ACTIONS",
        {
            "run_id": "GITHUB_RUN_ID",
            "attempt": "GITHUB_RUN_ATTEMPT",
            "workflow": "GITHUB_WORKFLOW",
            "job": "GITHUB_JOB",
            "repository": "GITHUB_REPOSITORY",
            "commit": "GITHUB_SHA",
            "branch": "GITHUB_REF_NAME",
            "runner": "RUNNER_NAME",
        },
    ),
    CIService(
        "gitlab-ci",
        "GITLAB_CI",
        {
            "run_id": "CI_PIPELINE_ID",
            "job": "CI_JOB_NAME",
            "repository": "CI_PROJECT_PATH",
            "commit": "CI_COMMIT_SHA",
            "branch": "CI_COMMIT_REF_NAME",
            "runner": "CI_RUNNER_DESCRIPTION",
            "url": "CI_JOB_URL",
        },
    ),
    CIService(
        "buildkite",
        "BUILDKITE",
        {
            "run_id": "BUILDKITE_BUILD_NUMBER",
            "job": "BUILDKITE_LABEL",
            "repository": "BUILDKITE_PIPELINE_SLUG",
            "commit": "BUILDKITE_COMMIT",
            "branch": "BUILDKITE_BRANCH",
            "runner": "BUILDKITE_AGENT_NAME",
            "url": "BUILDKITE_BUILD_URL",
        },
    ),
    CIService(
        "circleci",
        "CIRCLECI",
        {
            "run_id": "CIRCLE_BUILD_NUM",
            "job": "CIRCLE_JOB",
            "repository": "CIRCLE_PROJECT_REPONAME",
            "commit": "CIRCLE_SHA1",
            "branch": "CIRCLE_BRANCH",
            "url": "CIRCLE_BUILD_URL",
        },
    ),
    CIService(
        "azure-pipelines",
        "TF_BUILD",
        {
            "run_id": "BUILD_BUILDID",
            "job": "SYSTEM_JOBDISPLAYNAME",
            "repository": "BUILD_REPOSITORY_NAME",
            "commit": "BUILD_SOURCEVERSION",
            "branch": "BUILD_SOURCEBRANCHNAME",
            "runner": "AGENT_NAME",
        },
    ),
    CIService(
        "jenkins",
        "JENKINS_URL",
        {
            "run_id": "BUILD_NUMBER",
            "job": "JOB_NAME",
            "commit": "GIT_COMMIT",
            "branch": "GIT_BRANCH",
            "runner": "NODE_NAME",
            "url": "BUILD_URL",
        },
    ),
)


def ci_identity(environ: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """The CI job this process runs in, from its service's variables; None outside CI.

    ``{"service": "github-actions", "run_id": ..., "job": ..., "url": ...}``, with the fields
    the service sets; a CI that only sets ``CI=true`` gives ``{"service": "unknown"}``.
    """
    env = os.environ if environ is None else environ
    for service in CI_SERVICES:
        if env.get(service.marker):
            found = {"service": service.name}
            found.update({key: env[var] for key, var in service.fields.items() if env.get(var)})
            if service.name == "github-actions" and "run_id" in found:
                server = env.get("GITHUB_SERVER_URL", "https://github.com")
                repository = found.get("repository", "")
                found["url"] = f"{server}/{repository}/actions/runs/{found['run_id']}"
            return found
    if env.get("CI", "").lower() in ("true", "1"):
        return {"service": "unknown"}
    return None


def run_identity(
    start: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> dict[str, object]:
    """The report's ``run`` section: ``git`` (of the checkout at `start`) and ``ci``, if any."""
    run: dict[str, object] = {}
    git = git_revision(start)
    if git is not None:
        run["git"] = git
    ci = ci_identity(environ)
    if ci is not None:
        run["ci"] = ci
    return run
