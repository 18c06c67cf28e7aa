"""The dependency locks agree with their sources and with each other (no network).

Each ``requirements*.in`` lists direct dependencies; ``scripts/lock`` compiles it into the
``requirements*.txt`` beside it, every package pinned with its hashes, annotated with where it
came from (``# via -r requirements.in``). The checks here read those files only:

1. every direct dependency of an ``.in`` is locked at a version its specifier allows, and the
   lock names as coming from that ``.in`` exactly the packages the ``.in`` lists (a lock left
   behind after an edit of its ``.in`` fails);
2. every package in a lock is pinned with ``==`` and carries at least one hash, so pip checks
   every download (hash-checking mode needs them all);
3. the dev lock holds every package of ``requirements.txt`` at the same version;
4. ``requirements.txt``, which the Functions build installs, holds no ``azure-functions-worker``
   (the platform provides it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
# (source, lock): what scripts/lock compiles, in its order.
LOCKS = [
    ("requirements.in", "requirements.txt"),
    ("requirements-dev.in", "requirements-dev.txt"),
    ("requirements-checkov.in", "requirements-checkov.txt"),
]
PLATFORM_PACKAGES = {"azure-functions-worker"}

_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)$")
_HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


@dataclass
class Locked:
    version: str
    hashes: list[str] = field(default_factory=list)
    via: set[str] = field(default_factory=set)


@dataclass
class Lock:
    packages: dict[str, Locked]
    problems: list[str]


def read_lock(path: Path) -> Lock:
    """The packages a lock pins, with their hashes and ``via`` sources, and any line it can't read."""
    packages: dict[str, Locked] = {}
    problems: list[str] = []
    current: Locked | None = None
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            source = line.removeprefix("#").strip().removeprefix("via").strip()
            if current is not None and source.startswith(("-r ", "-c ")):
                current.via.add(source)
            continue
        first = line.removesuffix("\\").strip()
        if raw[:1].isspace():  # a continuation line: one of the current package's hashes
            if current is None or not _HASH.match(first):
                problems.append(f"{path.name}:{number}: not a sha256 hash: {first}")
            else:
                current.hashes.append(first)
            continue
        pin = _PIN.match(first)
        if pin is None:
            problems.append(f"{path.name}:{number}: not pinned with ==: {first}")
            current = None
            continue
        current = Locked(pin["version"])
        packages[canonicalize_name(pin["name"])] = current
    return Lock(packages, problems)


def read_sources(path: Path) -> dict[str, list[Requirement]]:
    """The requirements of an ``.in`` and of the ``.in`` files it includes (``-r``), by file."""
    sources: dict[str, list[Requirement]] = {path.name: []}
    for raw in path.read_text().splitlines():
        line = raw.split(" #")[0].strip()
        if not line or line.startswith(("#", "-c ")):
            continue
        if line.startswith("-r "):
            sources.update(read_sources(path.parent / line.removeprefix("-r ").strip()))
            continue
        sources[path.name].append(Requirement(line))
    return sources


def lock_problems(source: Path, lock_path: Path) -> list[str]:
    """Why the lock does not match its ``.in`` or misses hashes; empty when it is sound."""
    lock = read_lock(lock_path)
    problems = list(lock.problems)
    for name, package in lock.packages.items():
        if not package.hashes:
            problems.append(f"{lock_path.name}: {name}=={package.version} has no hash")
    for file, requirements in read_sources(source).items():
        listed = {canonicalize_name(r.name) for r in requirements}
        recorded = {n for n, p in lock.packages.items() if f"-r {file}" in p.via}
        for name in sorted(recorded - listed):
            problems.append(
                f"{lock_path.name}: {name} is locked via -r {file}, which no longer lists it"
            )
        for requirement in requirements:
            name = canonicalize_name(requirement.name)
            locked = lock.packages.get(name)
            if locked is None:
                problems.append(f"{lock_path.name}: {requirement} (from {file}) is not locked")
            elif not requirement.specifier.contains(locked.version, prereleases=True):
                problems.append(
                    f"{lock_path.name}: {name}=={locked.version} does not satisfy {requirement} ({file})"
                )
            elif name not in recorded:
                problems.append(f"{lock_path.name}: {name} is not annotated via -r {file}")
    return problems


def disagreements(app_lock: Path, dev_lock: Path) -> list[str]:
    """Packages of the app's lock that the dev lock misses or holds at another version."""
    app, dev = read_lock(app_lock).packages, read_lock(dev_lock).packages
    problems = []
    for name, locked in sorted(app.items()):
        other = dev.get(name)
        if other is None:
            problems.append(f"{dev_lock.name} misses {name}=={locked.version}")
        elif other.version != locked.version:
            problems.append(
                f"{name}: {app_lock.name} has {locked.version}, {dev_lock.name} {other.version}"
            )
    return problems


def platform_packages(app_lock: Path) -> list[str]:
    return sorted(PLATFORM_PACKAGES & read_lock(app_lock).packages.keys())


# ---------------------------------------------------------------- the repository's locks


@pytest.mark.parametrize(("source", "lock"), LOCKS)
def test_each_lock_pins_its_sources_with_hashes(source: str, lock: str) -> None:
    assert lock_problems(ROOT / source, ROOT / lock) == []
    direct = sum(len(r) for r in read_sources(ROOT / source).values())
    assert len(read_lock(ROOT / lock).packages) > direct, "the lock holds no transitive package"


def test_the_dev_lock_holds_the_apps_packages_at_the_same_versions() -> None:
    assert disagreements(ROOT / "requirements.txt", ROOT / "requirements-dev.txt") == []


def test_the_functions_build_installs_no_worker_of_its_own() -> None:
    assert platform_packages(ROOT / "requirements.txt") == []


# ---------------------------------------------------------------- the checks catch drift


def _first_app_pin() -> str:
    """The first line of requirements.in, ``name==version``: the one the copies below change."""
    return str(read_sources(ROOT / "requirements.in")["requirements.in"][0])


def _first_locked_line() -> str:
    text = (ROOT / "requirements.txt").read_text()
    return next(line for line in text.splitlines() if _PIN.match(line.removesuffix(" \\")))


@pytest.mark.parametrize(
    ("file", "change", "expected"),
    [
        # the .in moved on and the lock was not recompiled
        (
            "requirements.in",
            lambda t: t.replace(_first_app_pin(), _first_app_pin() + ".post9"),
            "does not satisfy",
        ),
        (
            "requirements.in",
            lambda t: t + "not-locked-yet==1.0\n",
            "not-locked-yet==1.0 (from requirements.in) is not locked",
        ),
        ("requirements.in", lambda t: t.replace(_first_app_pin(), ""), "which no longer lists it"),
        # the lock was edited by hand
        (
            "requirements.txt",
            lambda t: t.replace(_first_locked_line(), _first_locked_line().replace("==", ">=")),
            "not pinned with ==",
        ),
        (
            "requirements.txt",
            lambda t: t.replace("--hash=sha256:", "--hash=md5:", 1),
            "not a sha256 hash",
        ),
        ("requirements.txt", lambda t: re.sub(r" \\\n\s+--hash=\S+", "", t), "has no hash"),
    ],
    ids=["pin-changed", "package-added", "package-removed", "range", "md5", "no-hashes"],
)
def test_a_lock_that_does_not_match_its_source_fails(
    tmp_path: Path, file: str, change: Callable[[str], str], expected: str
) -> None:
    for name in ("requirements.in", "requirements.txt"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    original = (tmp_path / file).read_text()
    (tmp_path / file).write_text(change(original))
    assert (tmp_path / file).read_text() != original
    problems = lock_problems(tmp_path / "requirements.in", tmp_path / "requirements.txt")
    assert any(expected in p for p in problems), problems


def test_a_dev_lock_with_another_version_fails(tmp_path: Path) -> None:
    app = read_lock(ROOT / "requirements.txt").packages
    name, locked = next(iter(app.items()))
    dev = (ROOT / "requirements-dev.txt").read_text()
    pin = f"\n{name}=={locked.version} "
    assert pin in dev
    (tmp_path / "requirements-dev.txt").write_text(dev.replace(pin, f"\n{name}==0.0.1 "))
    assert disagreements(ROOT / "requirements.txt", tmp_path / "requirements-dev.txt") == [
        f"{name}: requirements.txt has {locked.version}, requirements-dev.txt 0.0.1"
    ]


def test_a_worker_in_the_apps_lock_fails(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.txt"
    worker = "azure-functions-worker==1.0.0 \\\n    --hash=sha256:" + "0" * 64 + "\n"
    lock.write_text((ROOT / "requirements.txt").read_text() + worker)
    assert platform_packages(lock) == ["azure-functions-worker"]
