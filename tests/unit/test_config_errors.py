"""A bad config is refused at start-up: every error with its dotted path, non-zero exit, nothing started.

Both entry points are covered: ``slm-router validate-config`` (positional or ``--config``)
and ``slm-router serve --config``, which must fail before it imports Ray or starts Redis.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_config
from gateway.errors import ConfigError

#: Eight independent mistakes: wrong types, out-of-range values, and unknown keys at four depths.
MANY_ERRORS = textwrap.dedent(
    """\
    server:
      port: not-a-port
      prot: 8000
    routing:
      threshold: 2
    tiers:
      small: {kind: vllm, served_model_name: s, typo: 2}
      large: {kind: litellm, served_model_name: l, model: m, timeout_s: -1}
    state:
      auth: {enabled: maybe, unknown_auth_key: 1}
    telemetry:
      colour: blue
    """
)
EXPECTED_PATHS = [
    "server.port",
    "server.prot",
    "routing.threshold",
    "tiers.small.vllm.typo",
    "tiers.large.litellm.timeout_s",
    "state.auth.enabled",
    "state.auth.unknown_auth_key",
    "telemetry.colour",
]
#: Line 3 is indented one space: a mapping where a key was expected.
BAD_YAML = "server:\n  port: 80\n bad-indent: [\n"


@pytest.fixture()
def many_errors(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(MANY_ERRORS)
    return path


@pytest.fixture()
def bad_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "broken.yaml"
    path.write_text(BAD_YAML)
    return path


def error_lines(message: str) -> dict[str, str]:
    """``{dotted path: problem}`` from a formatted validation error."""
    lines = message.splitlines()[1:]
    return dict(line.strip().split(": ", 1) for line in lines)


def test_every_error_is_reported_with_its_path(many_errors: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(many_errors, environ={})
    message = info.value.message
    assert message.splitlines()[0] == f"{many_errors}: {len(EXPECTED_PATHS)} error(s)"
    problems = error_lines(message)
    assert sorted(problems) == sorted(EXPECTED_PATHS)
    for unknown in ("server.prot", "tiers.small.vllm.typo", "state.auth.unknown_auth_key", "telemetry.colour"):
        assert problems[unknown] == "Extra inputs are not permitted"
    assert "integer" in problems["server.port"]
    assert "less than or equal to 1" in problems["routing.threshold"]


def test_environment_overrides_are_checked_with_their_path() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, environ={"SLM_ROUTER__SERVER__PORT": "eighty", "SLM_ROUTER__STATE__AUTH__TYPO": "1"})
    assert sorted(error_lines(info.value.message)) == ["server.port", "state.auth.typo"]


def test_yaml_syntax_error_names_the_file_and_line(bad_yaml: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(bad_yaml, environ={})
    message = info.value.message
    assert message.startswith(f"{bad_yaml}: invalid YAML")
    assert "line 3" in message


@pytest.mark.parametrize("form", ["positional", "option"])
def test_validate_config_reports_all_errors_and_exits_2(
    many_errors: Path, form: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = (
        ["validate-config", str(many_errors)]
        if form == "positional"
        else ["validate-config", "--config", str(many_errors)]
    )
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    for path in EXPECTED_PATHS:
        assert f"  {path}: " in captured.err


def test_validate_config_rejects_yaml_syntax_errors(bad_yaml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate-config", "--config", str(bad_yaml)]) == 2
    assert "invalid YAML" in capsys.readouterr().err


def test_validate_config_accepts_the_default_file(capsys: pytest.CaptureFixture[str]) -> None:
    default = Path(__file__).parents[2] / "gateway" / "default_config.yaml"
    assert main(["validate-config", "--config", str(default)]) == 0
    assert "OK (2 tiers" in capsys.readouterr().out


# `serve` runs in a child process, so "nothing was started" can be checked on a clean
# interpreter: a failed config load must return before Ray (or the Redis launcher) is imported.
_SERVE_PROBE = """
import sys
from gateway.cli import main
code = main(["serve", "--config", sys.argv[1]])
started = [m for m in ("ray", "deployments.runtime", "gateway.redis_server") if m in sys.modules]
print("imported:", started)
sys.exit(code)
"""


@pytest.mark.parametrize("fixture", ["many_errors", "bad_yaml"])
def test_serve_refuses_a_bad_config_before_starting_anything(fixture: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(fixture)
    repo = Path(__file__).parents[2]
    result = subprocess.run(
        [sys.executable, "-c", _SERVE_PROBE, str(path)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "imported: []" in result.stdout
    assert "starting slm-router" not in result.stdout
    if fixture == "many_errors":
        for dotted in EXPECTED_PATHS:
            assert f"  {dotted}: " in result.stderr
    else:
        assert "invalid YAML" in result.stderr
