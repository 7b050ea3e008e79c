"""Fail if a blocked (known-compromised) package version is pinned or installed.

litellm 1.82.7, 1.82.8 and every 1.107.x were compromised on PyPI. Run with lock files
as arguments to check pins, and with ``--installed`` to check the active environment.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

BLOCKED: dict[str, re.Pattern[str]] = {
    "litellm": re.compile(r"^(1\.82\.7|1\.82\.8|1\.107(\..*)?)$"),
}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check_pins(path: Path) -> list[str]:
    problems = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;#\\]+)", line)
        if not match:
            continue
        name, version = _normalise(match.group(1)), match.group(2)
        pattern = BLOCKED.get(name)
        if pattern and pattern.match(version):
            problems.append(f"{path}:{number}: {name}=={version} is a blocked (compromised) release")
    return problems


def check_installed() -> list[str]:
    problems = []
    for dist in metadata.distributions():
        name = _normalise(dist.metadata["Name"] or "")
        pattern = BLOCKED.get(name)
        if pattern and pattern.match(dist.version):
            problems.append(f"installed: {name}=={dist.version} is a blocked (compromised) release")
    return problems


def main(argv: list[str]) -> int:
    problems: list[str] = []
    for arg in argv:
        problems += check_installed() if arg == "--installed" else check_pins(Path(arg))
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
