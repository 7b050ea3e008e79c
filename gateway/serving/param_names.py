"""Errors from the shared chat pipeline, in the terms of another API served over it.

The Responses and Completions APIs are served as chat requests, so the pipeline's errors
name chat fields (``messages``, ``max_completion_tokens``, ...). A client of another API sent
other names: the error's ``param``, and every chat field its message mentions (JSON mode's
"'messages' must contain the word 'json' ... 'response_format'"), are renamed to those.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from gateway.errors import GatewayError

__all__ = ["ParamNames"]


class ParamNames:
    """Renames chat field names in errors to another API's (``{chat name: its name}``)."""

    def __init__(self, renames: Mapping[str, str]) -> None:
        self._renames = dict(renames)
        self._pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, self._renames)) + r")\b")

    def __call__(self, error: GatewayError) -> GatewayError:
        """``error`` with its chat names renamed, when its param is one of them (or inside one)."""
        param = error.param or ""
        for chat_name, name in self._renames.items():
            if param == chat_name or param.startswith((f"{chat_name}[", f"{chat_name}.")):
                message = self._pattern.sub(lambda match: self._renames[match.group(0)], error.message)
                return type(error)(message, param=name, code=error.code, retry_after=error.retry_after)
        return error
