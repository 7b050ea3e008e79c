"""What a load-test stream's events say: time to first text, usage, a problem, the end.

Chat streams (``chat.completion.chunk`` frames), Completions streams (``text_completion``
chunks) and Responses API streams (typed events) are read by the same object; the locustfile
feeds it each ``data:`` payload as JSON.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

__all__ = ["StreamRead"]

#: Events that end a Responses API stream with a whole response.
_RESPONSE_DONE = ("response.completed", "response.incomplete")


@dataclass
class StreamRead:
    """What a stream's events told so far: time to first text, usage, a problem, the end."""

    started: float
    ttft_ms: float | None = None
    usage: dict[str, Any] | None = None
    problem: str | None = None
    done: bool = False

    def _first_text(self) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = (time.perf_counter() - self.started) * 1000

    def chat_event(self, event: dict[str, Any]) -> None:
        """A ``chat.completion.chunk`` (or an in-stream error)."""
        if "error" in event:
            self.problem = f"error event: {str(event['error'].get('message', ''))[:120]}"
        for choice in event.get("choices") or ():
            if (choice.get("delta") or {}).get("content"):
                self._first_text()
        if event.get("usage"):
            self.usage = event["usage"]

    def completion_event(self, event: dict[str, Any]) -> None:
        """A ``text_completion`` chunk (or an in-stream error) of ``/v1/completions``."""
        if "error" in event:
            self.problem = f"error event: {str(event['error'].get('message', ''))[:120]}"
        if any(choice.get("text") for choice in event.get("choices") or ()):
            self._first_text()
        if event.get("usage"):
            self.usage = event["usage"]

    def responses_event(self, event: dict[str, Any]) -> None:
        """A Responses API event; the stream ends with ``response.completed`` or ``.incomplete``."""
        kind = event.get("type")
        if kind == "response.output_text.delta" and event.get("delta"):
            self._first_text()
        elif kind in _RESPONSE_DONE:
            self.done = True
            self.usage = (event.get("response") or {}).get("usage")
        elif kind == "error":
            self.problem = f"error event: {str(event.get('message', ''))[:120]}"
        elif kind == "response.failed" and self.problem is None:
            self.problem = "response.failed"
