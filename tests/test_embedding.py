"""Embeddings and reranking through ``Llama`` on real models (MiniLM, SmolLM2) and a
reranker made from MiniLM's weights with a classification head added."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llama_binding import ContextOverflowError, Llama, LlamaError
from llama_binding.generation.embedding import _groups, normalized

# SOURCES.md: llama.cpp's normalized "hello world" embedding with this file
HELLO_WORLD = [-0.0345, 0.0309, 0.0067, 0.0261, -0.0394, -0.1605]


@pytest.fixture(scope="module")
def bert(minilm: Path) -> Llama:
    llm = Llama(minilm, embedding=True)
    yield llm  # type: ignore[misc]
    llm.close()


def test_hello_world_matches_the_reference(bert: Llama) -> None:
    v = bert.embed("hello world")
    assert isinstance(v, list) and len(v) == 384
    np.testing.assert_allclose(v[:6], HELLO_WORLD, atol=2e-4)
    assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5


def test_similar_sentences_score_higher(bert: Llama) -> None:
    cat, kitten, stocks = bert.embed(["A cat sits on the mat.", "A kitten is sitting on a rug.",
                                      "Stock markets fell sharply today."], numpy=True)
    assert float(cat @ kitten) == pytest.approx(0.70, abs=0.01)
    assert float(cat @ stocks) < 0.1 < float(cat @ kitten)


def test_packed_inputs_equal_single_ones(bert: Llama) -> None:
    texts = [f"sentence number {i} about {'cats' if i % 2 else 'markets'}" for i in range(40)]
    packed = bert.embed(texts, numpy=True)  # 40 inputs: more than one decode of 16 sequences
    for i in (0, 17, 39):
        alone = bert.embed(texts[i], numpy=True)
        # F16 matrices: another batch shape sums in another order, so equal to ~1e-4
        np.testing.assert_allclose(packed[i], alone, atol=5e-4)
        assert float(packed[i] @ alone) > 0.9999
    assert float(packed[0] @ packed[1]) < 0.99  # and no input got another's vector


def test_create_embedding_is_openai_shaped(bert: Llama) -> None:
    out = bert.create_embedding(["hello world", "goodbye"])
    assert out["object"] == "list" and [d["index"] for d in out["data"]] == [0, 1]
    assert out["data"][0]["object"] == "embedding"
    np.testing.assert_allclose(out["data"][0]["embedding"][:6], HELLO_WORLD, atol=2e-4)
    assert out["usage"] == {"prompt_tokens": 4 + 3, "total_tokens": 4 + 3}


def test_normalize_off_and_counts(bert: Llama) -> None:
    raw, n = bert.embed("hello world", normalize=False, return_count=True)
    assert n == 4 and abs(float(np.linalg.norm(raw)) - 1.0) > 0.01
    np.testing.assert_allclose(normalized(np.array(raw, dtype=np.float32))[:6], HELLO_WORLD, atol=2e-4)


def test_too_long_input_raises_or_truncates(minilm: Path) -> None:
    with Llama(minilm, embedding=True, n_ubatch=32, n_batch=32) as llm:
        long_text = "word " * 100
        with pytest.raises(ContextOverflowError, match="input 1"):
            llm.embed(["short", long_text])
        v, n = llm.embed(long_text, truncate=True, return_count=True)
        assert n == 32 and len(v) == 384


def test_pooling_none_gives_a_row_per_token(minilm: Path) -> None:
    with Llama(minilm, embedding=True, pooling_type=0) as llm:
        rows = llm.embed("hello world", normalize=False, numpy=True)
    assert rows.shape == (4, 384)


def test_embedding_needs_embedding_mode(stories260k: Path) -> None:
    with Llama(stories260k, n_ctx=64) as llm, pytest.raises(LlamaError, match="embedding=True"):
        llm.embed("hello")


def test_bad_inputs(bert: Llama) -> None:
    with pytest.raises(TypeError, match="input 1"):
        bert.embed(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(LlamaError, match="reranker"):
        bert.rank("q", ["d"])


def test_decoder_model_with_last_token_pooling(smollm2: Path) -> None:
    with Llama(smollm2, embedding=True, pooling_type=3, n_ctx=512) as llm:
        a, b, c = llm.embed(["The cat sat on the mat.", "The cat sat on the mat.", "Stocks fell."],
                            numpy=True)
        assert a.shape == (576,) and abs(float(np.linalg.norm(a)) - 1.0) < 1e-5
        np.testing.assert_allclose(a, b, atol=1e-5)  # same text, other sequence of the batch
        assert float(a @ c) < 0.999
        # completions still work on the same Llama afterwards? the memory was cleared
        assert llm.n_tokens == 0


def test_groups_respect_tokens_and_sequences() -> None:
    inputs = [[1] * 5, [1] * 5, [1] * 5, [1] * 12, [1] * 1]
    assert [list(g) for g in _groups(inputs, 12, 16)] == [[0, 1], [2], [3], [4]]
    assert [list(g) for g in _groups(inputs[:3], 100, 2)] == [[0, 1], [2]]


# --- reranking ------------------------------------------------------------------------------

def _write_reranker(src: Path, dst: Path) -> Path:
    """MiniLM's weights and vocabulary with a random classification head and RANK pooling."""
    import gguf

    reader = gguf.GGUFReader(src)
    writer = gguf.GGUFWriter(dst, "bert")
    for name, fld in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = gguf.GGUFValueType(fld.types[0])
        value = fld.contents()
        if name == "bert.pooling_type":
            value = 4  # RANK
        if vtype == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(name, value, vtype, sub_type=gguf.GGUFValueType(fld.types[-1]))
        else:
            writer.add_key_value(name, value, vtype)
    for t in reader.tensors:
        writer.add_tensor(t.name, np.array(t.data), raw_shape=list(reversed([int(d) for d in t.shape])),
                          raw_dtype=t.tensor_type)
    rng = np.random.default_rng(7)
    n = 384
    writer.add_tensor("cls.weight", (rng.standard_normal((n, n)) * 0.2).astype(np.float32))
    writer.add_tensor("cls.bias", np.zeros(n, dtype=np.float32))
    writer.add_tensor("cls.output.weight", (rng.standard_normal((1, n)) * 0.2).astype(np.float32))
    writer.add_tensor("cls.output.bias", np.array([0.1], dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dst


@pytest.fixture(scope="module")
def reranker(minilm: Path, tmp_path_factory: pytest.TempPathFactory) -> Llama:
    path = _write_reranker(minilm, tmp_path_factory.mktemp("rerank") / "minilm-rerank.gguf")
    llm = Llama(path, embedding=True)
    yield llm  # type: ignore[misc]
    llm.close()


def test_rank_scores_each_document(reranker: Llama) -> None:
    docs = ["A cat sits on the mat.", "Stock markets fell sharply today.", "A cat sits on the mat.",
            "Kittens like milk."]
    scores = reranker.rank("Where is the cat?", docs)
    assert len(scores) == 4 and all(np.isfinite(scores))
    assert scores[0] == pytest.approx(scores[2], abs=1e-5)  # same pair, other sequence
    assert scores[0] != pytest.approx(scores[1], abs=1e-4)
    alone = reranker.rank("Where is the cat?", [docs[1]])
    assert alone[0] == pytest.approx(scores[1], abs=1e-3)  # packing does not change a score
    assert reranker.rank("Stocks?", [docs[0]])[0] != pytest.approx(scores[0], abs=1e-4)


def test_rerank_layout_is_llama_cpps() -> None:
    from llama_binding.generation.embedding import rerank_tokens

    # BOS query EOS SEP document EOS; BERT adds BOS ([CLS]) and SEP ([SEP]) but no EOS
    assert rerank_tokens([101], [7, 8], [102], [], [9]) == [101, 7, 8, 102, 9]
    assert rerank_tokens([1], [7], [], [2], [9]) == [1, 7, 2, 9, 2]
