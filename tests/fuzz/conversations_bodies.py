"""Hypothesis strategies for hostile ``/v1/conversations`` requests: wrong bodies (items,
metadata), odd conversation and item ids, odd page queries, and ``conversation`` on
``/v1/responses``."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.fuzz.bodies import FuzzRequest, dump_json, json_values, posts
from tests.fuzz.responses_bodies import RESPONSES, input_items

__all__ = ["conversations_requests"]

CONVERSATIONS = "/v1/conversations"
_IDS = st.one_of(
    st.sampled_from(["conv_0", "conv_" + "0" * 32, "", "{x}", "a:b", "x" * 200]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="?#/"), max_size=30),
)
_METADATA = st.one_of(
    st.dictionaries(st.text(max_size=70), st.one_of(st.text(max_size=600), json_values(1)), max_size=18),
    json_values(2),
)


def _bodies() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={"items": input_items(), "metadata": _METADATA})


def _with_conversation() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "model": st.sampled_from(["router", "small-model"]),
            "input": st.just("hi"),
            "conversation": st.one_of(_IDS, st.fixed_dictionaries({"id": _IDS}), json_values(2)),
        },
        optional={"previous_response_id": st.sampled_from(["resp_0", None]), "stream": st.booleans()},
    )


def conversations_requests() -> st.SearchStrategy[FuzzRequest]:
    """The Conversations API family, and responses that name a conversation."""
    targets = st.sampled_from(["open", "open", "keyed"])
    page = st.fixed_dictionaries(
        {},
        optional={
            "limit": st.sampled_from(["0", "1", "100", "101", "-1", "x", ""]),
            "order": st.sampled_from(["asc", "desc", "up", ""]),
            "after": _IDS,
        },
    )
    return st.one_of(
        posts(CONVERSATIONS, "conversations", _bodies()),
        st.builds(
            lambda cid, suffix, body, t: FuzzRequest(
                "POST", f"{CONVERSATIONS}/{cid}{suffix}", "conversations", dump_json(body), target=t
            ),
            _IDS,
            st.sampled_from(["", "/items"]),
            _bodies(),
            targets,
        ),
        st.builds(
            lambda method, cid, t: FuzzRequest(method, f"{CONVERSATIONS}/{cid}", "conversations", None, target=t),
            st.sampled_from(["GET", "DELETE"]),
            _IDS,
            targets,
        ),
        st.builds(
            lambda cid, params, t: FuzzRequest(
                "GET", f"{CONVERSATIONS}/{cid}/items", "conversations", None, params=params, target=t
            ),
            _IDS,
            page,
            targets,
        ),
        st.builds(
            lambda method, cid, iid, t: FuzzRequest(
                method, f"{CONVERSATIONS}/{cid}/items/{iid}", "conversations", None, target=t
            ),
            st.sampled_from(["GET", "DELETE"]),
            _IDS,
            _IDS,
            targets,
        ),
        posts(RESPONSES, "responses", _with_conversation()),
    )
