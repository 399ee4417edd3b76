"""The embedding half of :class:`~llama_binding.Llama`: ``embed``, ``create_embedding``
and ``rank`` over :mod:`llama_binding.generation.embedding`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import numpy.typing as npt

from .core.context import PoolingType
from .errors import LlamaError
from .generation.embedding import embed_tokens, fit, rerank_tokens
from .llama_types import CreateEmbeddingResponse

if TYPE_CHECKING:
    from ._guard import CallGuard
    from .core import Batch, Context, ContextParams, Vocab
    from .generation.steps import SequenceState

__all__ = ["EmbeddingMixin"]


class EmbeddingMixin:
    """``Llama``'s embedding and reranking methods (mixed into :class:`~llama_binding.Llama`)."""

    if TYPE_CHECKING:  # provided by Llama
        _vocab: Vocab
        _guard: CallGuard
        _state: SequenceState
        _batch: Batch
        context_params: ContextParams
        model_path: str

        @property
        def _context(self) -> Context: ...

    # --- embeddings and reranking (generation/embedding.py) ------------------------------

    def _embedding_inputs(self, texts: Sequence[str], truncate: bool) -> list[list[int]]:
        ctx = self._context
        if not self.context_params.embeddings:
            raise LlamaError("this Llama computes no embeddings: create it with embedding=True")
        limit = min(ctx.n_ubatch, ctx.n_batch, ctx.n_ctx_seq)
        out = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"input {i} must be a str, not {type(text).__name__}")
            with self._guard.using():
                toks = self._vocab.tokenize(text, add_special=True, parse_special=False)
            if not toks:
                raise ValueError(f"input {i} has no tokens")
            out.append(fit(toks, limit, truncate, i))
        return out

    def _embed(self, inputs: list[list[int]], normalize: bool) -> list[npt.NDArray[np.float32]]:
        with self._guard.held():
            self._state.reset()  # the memory is cleared: nothing of a completion stays to reuse
            return embed_tokens(self._context, inputs, normalize, self._batch)

    def embed(self, input: Union[str, Sequence[str]], normalize: bool = True, truncate: bool = False,
              return_count: bool = False, *, numpy: bool = False) -> Any:
        """Embeddings of a text or a list of texts (the model's pooling, or ``pooling_type``):
        a vector per text with a pooling type, a row per token without one.

        ``normalize=True`` (the default, as OpenAI and sentence-transformers; llama-cpp-python
        defaults to False) scales each vector to unit length. A text longer than one batch
        raises :class:`~llama_binding.errors.ContextOverflowError` unless ``truncate=True``.
        Plain lists, or numpy arrays with ``numpy=True``; ``return_count=True`` also
        returns the number of tokens.
        """
        single = isinstance(input, str)
        texts = [input] if isinstance(input, str) else list(input)
        inputs = self._embedding_inputs(texts, truncate)
        vectors = self._embed(inputs, normalize)
        result: Any = vectors if numpy else [v.tolist() for v in vectors]
        if single:
            result = result[0]
        return (result, sum(map(len, inputs))) if return_count else result

    def create_embedding(self, input: Union[str, Sequence[str]],
                         model: str | None = None) -> CreateEmbeddingResponse:
        """OpenAI's embeddings response for a text or a list of texts (normalized)."""
        texts = [input] if isinstance(input, str) else list(input)
        inputs = self._embedding_inputs(texts, truncate=False)
        vectors = self._embed(inputs, normalize=True)
        n = sum(map(len, inputs))
        return {
            "object": "list",
            "model": model or self.model_path,
            "data": [{"object": "embedding", "embedding": v.tolist(), "index": i}
                     for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": n, "total_tokens": n},
        }

    def rank(self, query: str, documents: Sequence[str], truncate: bool = False) -> list[float]:
        """Relevance scores of ``documents`` for ``query`` from a reranker (a model with a
        classification head, ``pooling_type`` RANK): higher is more relevant. Each pair is
        one input, laid out as llama.cpp's rerank does: BOS query EOS SEP document EOS."""
        if self._context.pooling_type != PoolingType.RANK:
            raise LlamaError("rank() needs a reranker: a model with a classification head, loaded with "
                             "embedding=True (its pooling is RANK, or pass pooling_type=4)")
        v = self._vocab
        bos = [v.bos()] if v.add_bos() else []
        eos = [v.eos()] if v.add_eos() else []
        sep = [v.sep()] if v.add_sep() else []
        q = v.tokenize(query, add_special=False)
        limit = min(self._context.n_ubatch, self._context.n_batch, self._context.n_ctx_seq)
        inputs = [fit(rerank_tokens(bos, q, sep, eos, v.tokenize(d, add_special=False)), limit, truncate, i)
                  for i, d in enumerate(documents)]
        return [float(s[0]) for s in self._embed(inputs, normalize=False)]
