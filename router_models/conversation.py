"""Conversation representation shared by training and serving.

Training data are single prompts; serving sees whole chat conversations. Both go through
:func:`render_conversation` so that a router sees exactly the same text shape in both places.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Upper bound on rendered characters. Keeps scoring CPU-light for huge conversations; when a
#: conversation is longer, the oldest turns are dropped first because the latest request is what
#: is being routed. ~4 chars/token, so this is well beyond what the embedding model reads.
MAX_RENDERED_CHARS = 8_000


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """One message of a chat conversation (OpenAI ``role`` + plain ``text`` content)."""

    role: str
    text: str


def turn_from_message(message: Mapping[str, Any]) -> ChatTurn:
    """An OpenAI chat message as the router reads it.

    The text parts are joined, ``developer`` reads as ``system`` (as the engines take it), and
    the tool calls an assistant turn made are written out as ``name(arguments)`` after its text.
    The gateway's scorer reads each request's messages through here, and labelled conversations
    are read the same way, so a router trains on the text it will score.
    """
    role = str(message["role"])
    content = message.get("content")
    if isinstance(content, list):
        text = "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    else:
        text = "" if content is None else str(content)
    for call in message.get("tool_calls") or ():
        function = call["function"]
        text += f"\n{function['name']}({function['arguments']})"
    return ChatTurn("system" if role == "developer" else role, text.strip())


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
