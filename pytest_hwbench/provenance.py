"""What a run was of: the git commit and branch it ran at, and the CI job that ran it.

Read offline and cheaply, for the report's ``run`` section: git's own files (no ``git``
process: HEAD, loose refs, packed-refs, worktrees' ``.git`` files), and the variables each CI
service documents for its jobs. A leaf: it imports nothing of ours.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
import zlib
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, NamedTuple

__all__ = [
    "CI_SERVICES",
    "CIService",
    "ci_identity",
    "commit_time",
    "git_revision",
    "run_identity",
]

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


def _loose_object(common: Path, sha: str) -> bytes | None:
    try:
        return zlib.decompress((common / "objects" / sha[:2] / sha[2:]).read_bytes())
    except (OSError, zlib.error):
        return None


def _pack_offset(index_path: Path, name: bytes) -> int | None:
    """Where object `name` starts in the pack beside `index_path`, or None if not there.

    Pack index version 2: a 256-entry fan-out of counts by first byte, the sorted object
    names, their CRCs, then 4-byte offsets (the high bit pointing into a table of 8-byte ones).
    """
    width = len(name)
    with (
        index_path.open("rb") as file,
        mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as index,
    ):
        if index[:8] != b"\377tOc\x00\x00\x00\x02":
            return None
        fanout = struct.unpack_from(">256I", index, 8)
        count = fanout[255]
        low = fanout[name[0] - 1] if name[0] else 0
        high = fanout[name[0]]
        names = 8 + 256 * 4
        while low < high:  # binary search among the names sharing the first byte
            middle = (low + high) // 2
            if index[names + middle * width : names + (middle + 1) * width] < name:
                low = middle + 1
            else:
                high = middle
        start = names + low * width
        if low >= count or index[start : start + width] != name:
            return None
        offsets = names + count * width + count * 4
        (offset,) = struct.unpack_from(">I", index, offsets + low * 4)
        if offset & 0x80000000:
            (offset,) = struct.unpack_from(
                ">Q", index, offsets + count * 4 + (offset & 0x7FFFFFFF) * 8
            )
        return int(offset)


def _inflate(pack: BinaryIO, offset: int) -> bytes:
    """The zlib stream starting at `offset` of `pack`, inflated."""
    pack.seek(offset)
    stream = zlib.decompressobj()
    data = b""
    while not stream.eof:
        chunk = pack.read(64 * 1024)
        if not chunk:
            raise zlib.error("the pack ends inside an object")
        data += stream.decompress(chunk)
    return data


def _apply_delta(base: bytes, delta: bytes) -> bytes:
    """Git's delta format: two size varints, then copy-from-base and insert instructions."""
    position = 0
    for _ in range(2):  # the base's size, then the result's: not needed here
        while delta[position] & 0x80:
            position += 1
        position += 1
    out = bytearray()
    while position < len(delta):
        op = delta[position]
        position += 1
        if op & 0x80:  # copy: up to 4 offset bytes and 3 size bytes, present by the op's bits
            start = size = 0
            for bit in range(7):
                if op & (1 << bit):
                    value = delta[position]
                    position += 1
                    if bit < 4:
                        start |= value << (8 * bit)
                    else:
                        size |= value << (8 * (bit - 4))
            out += base[start : start + (size or 0x10000)]
        elif op:  # insert the next `op` bytes
            out += delta[position : position + op]
            position += op
        else:
            raise ValueError("delta instruction 0 is reserved")
    return bytes(out)


def _pack_object(
    pack: BinaryIO, index_path: Path, offset: int, width: int, depth: int = 0
) -> tuple[int, bytes]:
    """The type number and content of the object at `offset`, its deltas applied.

    `width` is the length of the repository's object names (20: SHA-1, 32: SHA-256).
    """
    if depth > 64:
        raise ValueError("a delta chain deeper than git makes")
    pack.seek(offset)
    header = pack.read(32)
    kind = (header[0] >> 4) & 7
    used = 1
    while header[used - 1] & 0x80:  # the size's varint
        used += 1
    if kind == 6:  # OFS_DELTA: its base lies a (big-endian, offset-by-one varint) distance back
        byte = header[used]
        used += 1
        distance = byte & 0x7F
        while byte & 0x80:
            byte = header[used]
            used += 1
            distance = ((distance + 1) << 7) | (byte & 0x7F)
        base_kind, base = _pack_object(pack, index_path, offset - distance, width, depth + 1)
        return base_kind, _apply_delta(base, _inflate(pack, offset + used))
    if kind == 7:  # REF_DELTA: its base named by the object name that follows
        base_name = header[used : used + width]
        base_offset = _pack_offset(index_path, base_name)
        if base_offset is None:
            raise ValueError("a delta's base is not in its pack")
        base_kind, base = _pack_object(pack, index_path, base_offset, width, depth + 1)
        return base_kind, _apply_delta(base, _inflate(pack, offset + used + width))
    return kind, _inflate(pack, offset + used)


def _packed_object(common: Path, sha: str) -> bytes | None:
    """A commit from a pack (what clones, shallow CI fetches and gc leave), deltas resolved."""
    name = bytes.fromhex(sha)
    for index_path in sorted((common / "objects" / "pack").glob("pack-*.idx")):
        try:
            offset = _pack_offset(index_path, name)
            if offset is None:
                continue
            with index_path.with_suffix(".pack").open("rb") as pack:
                kind, data = _pack_object(pack, index_path, offset, len(name))
            return b"commit 0\x00" + data if kind == 1 else None  # 1: a commit
        except (OSError, ValueError, struct.error, zlib.error, IndexError):
            continue
    return None


def commit_time(common: Path, sha: str) -> datetime | None:
    """When commit `sha` was committed (its committer date), read from git's object store."""
    raw = _loose_object(common, sha) or _packed_object(common, sha)
    if raw is None or not raw.startswith(b"commit "):
        return None
    _, _, body = raw.partition(b"\x00")
    for line in body.split(b"\n\n", 1)[0].splitlines():
        if line.startswith(b"committer "):
            match = re.search(rb" (\d+) [+-]\d{4}$", line)
            if match:
                return datetime.fromtimestamp(int(match.group(1)), tz=timezone.utc)
    return None


def git_revision(start: str | os.PathLike[str]) -> dict[str, str | None] | None:
    """The commit and branch of the checkout holding `start`, and when it was committed.

    ``{"commit": sha, "branch": name or None, "committed": ISO 8601 time or None}``, or None
    outside a checkout. The branch is None on a detached HEAD (CI checks out a commit so);
    the commit is None for a branch with no commit yet. The committed time places reports in
    a history (``hwbench matrix``) whatever order they ran in.
    """
    dirs = _git_dirs(Path(start).resolve())
    if dirs is None:
        return None
    git_dir, common = dirs
    head = _read(git_dir / "HEAD")
    if head is None:
        return None
    branch = None
    if head.startswith("ref:"):
        ref = head.removeprefix("ref:").strip()
        commit = _resolve_ref(common, git_dir, ref)
        branch = ref.removeprefix("refs/heads/")
    else:
        commit = head if _SHA_RE.match(head) else None
    when = commit_time(common, commit) if commit else None
    return {
        "commit": commit,
        "branch": branch,
        "committed": when.isoformat(timespec="seconds") if when else None,
    }


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
