"""``Llama.create_completion`` with several prompts (``prompt=[p1, p2, ...]``) or several
samples (``n=k``): one choice per sequence (OpenAI's ``index``), all sequences decoded
together by a :class:`~llama_binding.generation.batching.BatchEngine` over the Llama's own
context. The context's ``n_seq_max`` is the number of sequences decoded at once (more
requests wait for a free slot), so create the ``Llama`` with ``n_seq_max=8`` (and
``kv_unified=True``, so that every sequence may use the whole context) to batch.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Union

from .core.sampler import SamplerChain
from .generation.batching import BatchEngine, BatchRequest
from .generation.sampling import SamplingParams, build_chain, is_plain_greedy
from .generation.stopping import StopMatcher
from .generation.stream import FinishReason, TextAssembler, TextChunk
from .llama_types import CompletionChoice, CompletionChunk, CreateCompletionResponse

if TYPE_CHECKING:
    from .llama import Llama

__all__ = ["is_multi_prompt", "multi_completion"]


def is_multi_prompt(prompt: object) -> bool:
    """A list of strings or of token lists (a list of ints is one tokenized prompt)."""
    return isinstance(prompt, (list, tuple)) and bool(prompt) and all(
        isinstance(p, str) or (isinstance(p, (list, tuple)) and not isinstance(p, str)) for p in prompt)


def multi_completion(
    llm: Llama, prompts: Sequence[Union[str, Sequence[int]]], n: int, sampling: SamplingParams,
    max_tokens: int | None, stop: Union[str, Sequence[str], None], stream: bool, model: str | None,
) -> Union[CreateCompletionResponse, Iterator[CompletionChunk]]:
    """One choice per (prompt, sample): prompt ``i``'s ``j``-th sample is choice ``i * n + j``;
    sample ``j`` uses ``seed + j`` so the samples differ and reproduce."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    token_lists = [llm._prompt_tokens(p) for p in prompts]
    cid, created, name = f"cmpl-{uuid.uuid4()}", int(time.time()), model or llm.model_path
    chunks = _run(llm, token_lists, n, sampling, max_tokens, stop)
    if stream:
        return ({"id": cid, "object": "text_completion", "created": created, "model": name,
                 "choices": [choice]} for choice, _ in chunks)
    texts: dict[int, list[str]] = {}
    reasons: dict[int, FinishReason | None] = {}
    n_out = 0
    for choice, n_tokens in chunks:
        i = choice["index"]
        texts.setdefault(i, []).append(choice["text"])
        reasons[i] = choice["finish_reason"] or reasons.get(i)
        n_out += n_tokens
    choices: list[CompletionChoice] = [
        {"text": "".join(texts.get(i, [])), "index": i, "logprobs": None, "finish_reason": reasons.get(i)}
        for i in range(len(token_lists) * n)]
    n_prompt = sum(len(t) for t in token_lists) * n
    response: CreateCompletionResponse = {
        "id": cid, "object": "text_completion", "created": created, "model": name, "choices": choices,
        "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out}}
    return response


def _run(llm: Llama, token_lists: list[list[int]], n: int, sampling: SamplingParams,
         max_tokens: int | None, stop: Union[str, Sequence[str], None]
         ) -> Iterator[tuple[CompletionChoice, int]]:
    """The choices' text chunks as the engine produces them, with their token counts."""
    vocab = llm._vocab
    chains: list[SamplerChain] = []
    llm._acquire()
    try:
        ctx = llm._context
        llm._slot.detach()  # its backend chain would keep seq 0 from the engine
        llm._state.reset()  # the engine's slots reuse the Llama's sequence: its prefix is gone
        greedy = is_plain_greedy(sampling, vocab.n_tokens)
        # plain greedy on the GPU: every slot's argmax in the decode (no logits copied back)
        gpu = llm._slot.backend  # the CPU's threads are free while a GPU decodes
        engine = BatchEngine(ctx, vocab, greedy="backend" if greedy and gpu else "host",
                             host_threads=ctx.n_threads if gpu else 1)
        texts: dict[int, tuple[int, TextAssembler]] = {}
        reqs: list[BatchRequest] = []
        for toks in token_lists:
            for j in range(n):
                params = sampling if j == 0 else replace(sampling, seed=None if sampling.seed is None
                                                         else sampling.seed + j)
                chain = None if greedy else build_chain(params, vocab, ctx.n_ctx)
                if chain is not None:
                    chains.append(chain)
                r = engine.submit(BatchRequest(list(toks), max_tokens, chain))
                reqs.append(r)
                texts[r.id] = (len(texts), TextAssembler(vocab, StopMatcher(stop)))
        try:
            while engine.busy:
                stepped = engine.step()
                failed = next((r.error for r in reqs if r.error is not None), None)
                if failed is not None:
                    raise failed
                for r, tok in stepped:
                    i, text = texts[r.id]
                    chunk = text.feed(tok)
                    if text.finish_reason is None and not r.done:
                        if chunk is not None:
                            yield _choice(i, chunk), len(chunk.tokens)
                        continue
                    # this choice is over: a stop string, end of generation, or its length
                    if not r.done:
                        engine.cancel(r)  # a stop string: the other sequences go on
                    if chunk is None or chunk.finish_reason is None:
                        if chunk is not None:
                            yield _choice(i, chunk), len(chunk.tokens)
                        chunk = text.end("stop" if r.finish_reason == "stop" else "length")
                    yield _choice(i, chunk), len(chunk.tokens)
        finally:
            for r in [*engine._active, *engine._waiting]:
                engine.cancel(r)
            engine.close()
    finally:
        for c in chains:
            c.close()
        llm._release()


def _choice(index: int, chunk: TextChunk) -> CompletionChoice:
    return {"text": chunk.text, "index": index, "logprobs": None, "finish_reason": chunk.finish_reason}
