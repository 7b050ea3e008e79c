"""Fail if a blocked (known-compromised) package version is pinned or installed.

litellm 1.82.7, 1.82.8 and every 1.107.x were compromised on PyPI. Run with lock files
(``requirements/*.lock``, ``pyproject.toml``) as arguments to check pins, and with
``--installed`` to check the active environment. A blocked package must be pinned
exactly (``==``): a range such as ``litellm>=1.80`` could resolve to a blocked release.

Runs on any Python 3 without third-party packages (the install calls it before the
virtual environment exists).
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

BLOCKED: dict[str, re.Pattern[str]] = {
    "litellm": re.compile(r"^(1\.82\.7|1\.82\.8|1\.107(\..*)?)$"),
}

# A requirement at the start of a line, bare (lock files) or quoted (pyproject.toml lists):
# name, optional extras, then its version specifiers up to a quote, comma-free marker or comment.
_REQUIREMENT = re.compile(r"""^\s*["']?([A-Za-z0-9][A-Za-z0-9_.\-]*)\s*(?:\[[^\]]*\])?\s*([=<>!~][^"';#\\]*)""")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _problem(name: str, specifiers: str) -> str | None:
    """Why ``name`` with ``specifiers`` (e.g. ``==1.82.7`` or ``>=1.80,<2``) is not allowed."""
    pattern = BLOCKED.get(name)
    if pattern is None:
        return None
    specs = [s.strip() for s in specifiers.split(",") if s.strip()]
    pinned = [s.lstrip("=").strip() for s in specs if s.startswith("==")]
    if len(specs) != 1 or not pinned or "*" in pinned[0]:
        return f"{name}{specifiers.strip()} is not an exact pin; it could resolve to a blocked (compromised) release"
    if pattern.match(pinned[0]):
        return f"{name}=={pinned[0]} is a blocked (compromised) release"
    return None


def check_pins(path: Path) -> list[str]:
    """Problems with the blocked packages pinned in one lock or pyproject file."""
    problems = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = _REQUIREMENT.match(line)
        if not match:
            continue
        problem = _problem(_normalise(match.group(1)), match.group(2))
        if problem is not None:
            problems.append(f"{path}:{number}: {problem}")
    return problems


def check_installed() -> list[str]:
    """Problems with the blocked packages installed in the running environment."""
    problems = []
    for dist in metadata.distributions():
        name = _normalise(dist.metadata["Name"] or "")
        pattern = BLOCKED.get(name)
        if pattern and pattern.match(dist.version):
            problems.append(f"installed: {name}=={dist.version} is a blocked (compromised) release")
    return problems


def main(argv: list[str]) -> int:
    """Check every argument (a file, or ``--installed``); exit status 1 on any problem."""
    problems: list[str] = []
    for arg in argv:
        problems += check_installed() if arg == "--installed" else check_pins(Path(arg))
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
