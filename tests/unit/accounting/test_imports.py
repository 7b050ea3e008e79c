"""Importing the packages is cheap and safe for gateway.config to import their config models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_import_pulls_in_neither_gateway_config_nor_heavy_libraries() -> None:
    # gateway.config will import gateway.accounting.config and gateway.telemetry.config;
    # if these packages imported gateway.config back at import time, that would be a cycle.
    code = (
        "import sys, gateway.accounting, gateway.telemetry\n"
        "heavy = ['gateway.config', 'litellm', 'ray', 'opentelemetry.exporter.otlp.proto.http', 'redis']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
