"""The whole fuzzing mix, over every family of :mod:`tests.fuzz.bodies`,
:mod:`tests.fuzz.responses_bodies` and :mod:`tests.fuzz.completions_bodies`."""

from __future__ import annotations

from hypothesis import strategies as st

from tests.fuzz.bodies import (
    FuzzRequest,
    admin_requests,
    chat_bodies,
    chat_requests,
    mutated_chat_bodies,
    raw_chat_requests,
    valid_chat_bodies,
)
from tests.fuzz.completions_bodies import completions_requests
from tests.fuzz.conversations_bodies import conversations_requests
from tests.fuzz.responses_bodies import responses_requests
from tests.fuzz.vllm_extensions import chat_bodies_with_vllm_extensions, valid_constrained_bodies

__all__ = ["fuzz_requests"]


def fuzz_requests(max_body_bytes: int) -> st.SearchStrategy[FuzzRequest]:
    """Mostly structured chat bodies, then raw bytes, admin, a valid control group, and the
    Responses, Completions and Conversations APIs."""
    return st.one_of(
        chat_requests(chat_bodies(), "structured"),
        chat_requests(chat_bodies_with_vllm_extensions(), "structured"),
        chat_requests(mutated_chat_bodies(), "mutated"),
        chat_requests(mutated_chat_bodies(), "mutated"),
        raw_chat_requests(max_body_bytes),
        admin_requests(),
        chat_requests(valid_chat_bodies(), "valid"),
        chat_requests(valid_constrained_bodies(), "valid"),
        responses_requests(),
        completions_requests(),
        conversations_requests(),
    )
