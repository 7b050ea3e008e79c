"""Lexical router: learns something, round-trips exactly, refuses bad artifacts, reads all turns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from router_models import ChatTurn, RouterArtifactError, RouterError, load_router
from router_models.artifacts import ARRAYS_FILE, METADATA_FILE, save_router
from router_models.conversation import as_conversation
from router_models.data import LabeledPrompts
from router_models.lexical import LexicalRouter, train_lexical
from router_models.metrics import random_scores, routing_metrics


@pytest.fixture(scope="module")
def lexical(mmlu_split: tuple[LabeledPrompts, LabeledPrompts]) -> LexicalRouter:
    return train_lexical(mmlu_split[0], seed=0)


@pytest.fixture()
def artifact(lexical: LexicalRouter, tmp_path: Path) -> Path:
    out = tmp_path / "lexical"
    save_router(lexical, out, {"default_threshold": 0.5, "calibration": {"table": []}})
    return out


def test_beats_random_on_held_out_slice(
    lexical: LexicalRouter, mmlu_split: tuple[LabeledPrompts, LabeledPrompts]
) -> None:
    test = mmlu_split[1]
    scores = lexical.score_many([as_conversation(p) for p in test.prompts])
    assert np.all((scores >= 0) & (scores <= 1))
    ours = routing_metrics(scores, test.weak, test.strong)
    rand = np.mean([routing_metrics(random_scores(len(test), s), test.weak, test.strong).apgr for s in range(5)])
    assert ours.apgr > rand + 0.05, (ours, rand)
    assert ours.cpt50 < 0.45


def test_training_is_reproducible(mmlu_split: tuple[LabeledPrompts, LabeledPrompts], tmp_path: Path) -> None:
    small = mmlu_split[0].subset(np.arange(600))
    first, again = train_lexical(small, seed=0), train_lexical(small, seed=0)
    convs = [as_conversation(p) for p in mmlu_split[1].prompts[:50]]
    np.testing.assert_array_equal(again.score_many(convs), first.score_many(convs))
    # Same model → byte-identical artifact file.
    save_router(first, tmp_path / "a", {})
    save_router(again, tmp_path / "b", {})
    assert (tmp_path / "a" / ARRAYS_FILE).read_bytes() == (tmp_path / "b" / ARRAYS_FILE).read_bytes()


def test_round_trip_gives_identical_scores(
    lexical: LexicalRouter, artifact: Path, mmlu_split: tuple[LabeledPrompts, LabeledPrompts]
) -> None:
    loaded = load_router(artifact)
    assert loaded.name == "lexical"
    assert loaded.metadata["default_threshold"] == 0.5
    convs = [as_conversation(p) for p in mmlu_split[1].prompts[:200]]
    np.testing.assert_array_equal(loaded.score_many(convs), lexical.score_many(convs))
    assert loaded.score(convs[0]) == lexical.score(convs[0])


def test_whole_conversation_is_scored(lexical: LexicalRouter) -> None:
    last = ChatTurn("user", "And what is the answer then?")
    a = [
        ChatTurn("user", "Compute the eigenvalues of a 3x3 rotation matrix about the z axis."),
        ChatTurn("assistant", "Sure."),
        last,
    ]
    b = [ChatTurn("user", "Tell me a joke about cats."), ChatTurn("assistant", "Sure."), last]
    assert lexical.score(a) != lexical.score(b)
    assert lexical.score(a) != lexical.score([last])


def test_corrupt_array_file_is_refused(artifact: Path) -> None:
    data = bytearray((artifact / ARRAYS_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (artifact / ARRAYS_FILE).write_bytes(bytes(data))
    with pytest.raises(RouterArtifactError, match="sha256 mismatch"):
        load_router(artifact)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("format_version", 99, "format version 99 is not supported"),
        ("router", "no-such-router", "unknown router"),
        ("algorithm_version", 0, "algorithm version"),
        ("format", "something-else", "not a router artifact"),
    ],
)
def test_mismatched_metadata_is_refused(artifact: Path, field: str, value: object, message: str) -> None:
    meta = json.loads((artifact / METADATA_FILE).read_text())
    meta[field] = value
    (artifact / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(RouterArtifactError, match=message):
        load_router(artifact)


def test_missing_or_garbage_artifacts(tmp_path: Path, artifact: Path) -> None:
    with pytest.raises(RouterArtifactError, match="does not exist"):
        load_router(tmp_path / "nope")
    (artifact / METADATA_FILE).write_text("{not json")
    with pytest.raises(RouterArtifactError, match="not valid JSON"):
        load_router(artifact)
    assert issubclass(RouterArtifactError, RouterError)


def test_wrong_shapes_are_refused(artifact: Path, lexical: LexicalRouter) -> None:
    config, arrays = lexical.export()
    arrays["coef"] = arrays["coef"][:, :10]
    with pytest.raises(RouterArtifactError, match="expects"):
        LexicalRouter.from_parts(config, arrays, {})
    del arrays["idf"]
    with pytest.raises(RouterArtifactError, match="malformed"):
        LexicalRouter.from_parts(config, arrays, {})


def test_concurrent_scoring_matches_serial(
    lexical: LexicalRouter, mmlu_split: tuple[LabeledPrompts, LabeledPrompts]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    convs = [as_conversation(p) for p in mmlu_split[1].prompts[:64]]
    serial = [lexical.score(c) for c in convs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lexical.score, convs))
    assert parallel == serial


def test_fast_path_matches_batch_path(
    lexical: LexicalRouter, mmlu_split: tuple[LabeledPrompts, LabeledPrompts]
) -> None:
    from router_models.conversation import render_conversation

    vec = lexical._vec
    texts = [render_conversation(as_conversation(p)) for p in mmlu_split[1].prompts[:100]]
    texts += ["", "ünïcödé ✓ 数学 question?", "a " * 5000]
    counts = vec.raw_counts(texts)
    for i, text in enumerate(texts):
        cols, vals = vec.hashed_counts(text)
        row = counts[i]
        np.testing.assert_array_equal(cols, np.sort(row.indices))
        np.testing.assert_array_equal(vals, row.toarray().ravel()[cols])
    convs = [as_conversation(p) for p in mmlu_split[1].prompts[:100]]
    batch = lexical._head.score(vec.transform([render_conversation(c) for c in convs], [1] * len(convs)))
    # Same math; the batch path multiplies in float32 in places, hence the tolerance.
    np.testing.assert_allclose(lexical.score_many(convs), batch, rtol=0, atol=1e-6)
