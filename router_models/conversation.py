"""Conversation representation shared by training and serving.

Training data are single prompts; serving sees whole chat conversations. Both go through
:func:`render_conversation` so that a router sees exactly the same text shape in both places.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: Upper bound on rendered characters. Keeps scoring CPU-light for huge conversations; when a
#: conversation is longer, the oldest turns are dropped first because the latest request is what
#: is being routed. ~4 chars/token, so this is well beyond what the embedding model reads.
MAX_RENDERED_CHARS = 8_000


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """One message of a chat conversation (OpenAI ``role`` + plain ``text`` content)."""

    role: str
    text: str


def as_conversation(prompt: str) -> tuple[ChatTurn, ...]:
    """Wrap a single user prompt (a benchmark row) as a one-turn conversation."""
    return (ChatTurn("user", prompt),)


def render_conversation(conversation: Sequence[ChatTurn], max_chars: int = MAX_RENDERED_CHARS) -> str:
    """Render all turns of ``conversation`` as one text, newest turns kept when over ``max_chars``.

    Every turn is rendered as ``"<role>: <text>"`` so that earlier turns (including system
    prompts and assistant answers) influence the score, not only the last user message.
    """
    parts: list[str] = []
    used = 0
    for turn in reversed(conversation):
        piece = f"{turn.role}: {turn.text.strip()}"
        room = max_chars - used
        if room <= 0:
            break
        if len(piece) > room:
            # Keep the head of the turn: questions state the task before long pasted context.
            piece = piece[:room]
        parts.append(piece)
        used += len(piece) + 2
    return "\n\n".join(reversed(parts))
