"""A Llama used from several threads: close() while a call runs, reset() during a call,
a stream left unread, streams that pause and resume (llama_binding/_guard.py).

What could crash or hang runs in a child interpreter (tests/_child.py), bounded in time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _child import Child, raised

from llama_binding import Llama
from llama_binding.core import Model, Vocab
from llama_binding.errors import StreamInterruptedError
from llama_binding.generation.drafters import LlamaPromptLookupDecoding

# --- close() from another thread while a call runs -------------------------------------------

CLOSE_RACE = r'''
import threading, time
from llama_binding import Llama

STORIES, MINILM = sys.argv[1], sys.argv[2]

def race(label, make, call, delay):
    """``call(llm)`` in a thread; close() from here after ``delay`` s."""
    llm = make()
    box = {}
    started = threading.Event()
    def work():
        started.set()
        try:
            box["value"] = call(llm)
        except BaseException as exc:
            box["error"] = exc
    t = threading.Thread(target=work)
    t.start()
    started.wait()
    time.sleep(delay)
    t0 = time.monotonic()
    llm.close()
    took = time.monotonic() - t0
    t.join(30)
    def outcome():
        if t.is_alive():
            raise TimeoutError("the call still runs 30 s after close()")
        if "error" in box:
            raise box["error"]
        return box["value"]
    report(label, outcome)
    report(label + "-took", lambda: round(took, 3))
    report(label + "-after", lambda: llm("Once", max_tokens=1))

def stories(**kw):
    return Llama(STORIES, n_ctx=4096, n_threads=1, **kw)

LONG = list(range(3, 300)) * 14  # 4158 token ids of stories260K: a prompt decode of about 1.5 s

race("completion", stories, lambda llm: llm("Once upon a time", max_tokens=3000, temperature=0.0), 0.3)
race("stream", stories,
     lambda llm: [c for c in llm("Once upon a time", max_tokens=3000, temperature=0.0, stream=True)], 0.3)
race("prompt", lambda: stories(n_batch=4096, n_ubatch=4096),
     lambda llm: llm(LONG[:4000], max_tokens=1), 0.3)
race("embedding", lambda: Llama(MINILM, embedding=True, n_threads=1),
     lambda llm: llm.embed(["hello world " * 200] * 16), 0.3)
def tokenize_forever(llm):
    while True:
        llm.tokenize(b"hello world " * 50000)
race("tokenize", stories, tokenize_forever, 0.2)

# a stream read once and then left: close() from another thread does not wait for it
llm = stories()
it = llm("Once upon a time", max_tokens=50, temperature=0.0, stream=True)
next(it)
t = threading.Thread(target=llm.close)
t.start()
t.join(20)
report("paused-close", lambda: t.is_alive())
report("paused-next", lambda: next(it))

# close() from a callback of the running call: the call ends with ClosedError, then it frees
llm = stories()
def closing_processor(ids, logits):
    if len(ids) > 10:
        llm.close()
    return logits
report("callback", lambda: llm("Once upon a time", max_tokens=50, logits_processor=closing_processor))
report("callback-after", lambda: llm("Once", max_tokens=1))
report("callback-freed", lambda: llm.engine.model.closed)
'''


@pytest.fixture(scope="module")
def close_race(stories260k: Path, minilm: Path) -> Child:
    return Child(CLOSE_RACE, str(stories260k), str(minilm), timeout=120)


@pytest.mark.parametrize("case", ["completion", "stream", "prompt", "embedding", "tokenize"])
def test_close_from_another_thread_aborts_the_call(close_race: Child, case: str) -> None:
    raised(close_race[case], "ClosedError", naming=("closed",))
    assert float(close_race[f"{case}-took"].message) < 2.0  # the decode was aborted, not awaited
    raised(close_race[f"{case}-after"], "ClosedError", naming=("closed",))


def test_close_while_a_stream_is_paused(close_race: Child) -> None:
    assert close_race["paused-close"].message == "False"  # close() did not wait for the stream
    raised(close_race["paused-next"], "ClosedError", naming=("closed",))


def test_close_from_a_callback_of_the_running_call(close_race: Child) -> None:
    raised(close_race["callback"], "ClosedError", naming=("closed",))
    raised(close_race["callback-after"], "ClosedError", naming=("closed",))
    assert close_race["callback-freed"].message == "True"


# --- reset() and other calls from another thread ---------------------------------------------

RESET_RACE = r'''
import threading, time
llm = Llama(sys.argv[1], n_ctx=1024, n_threads=1)
ask = dict(max_tokens=300, temperature=0.0)
want = llm("Once upon a time", **ask)["choices"][0]["text"]
stop = threading.Event()
resets = [0]
def resetter():
    while not stop.is_set():
        llm.reset()
        resets[0] += 1
        time.sleep(0.001)
t = threading.Thread(target=resetter)
t.start()
got = []
for _ in range(3):
    got.append(llm("Once upon a time", **ask)["choices"][0]["text"])
    time.sleep(0.01)  # a free moment: the resetter must get in (on a GPU a completion is short)
stop.set()
t.join()
report("same", lambda: [g == want for g in got])
report("resets", lambda: resets[0])
'''


def test_reset_from_another_thread_waits_for_the_running_completion(stories260k: Path) -> None:
    child = Child(RESET_RACE, str(stories260k))
    assert child["same"].message == "[True, True, True]"
    assert int(child["resets"].message) >= 3  # it did run between the completions


IDLE_STREAM = r'''
import threading
llm = Llama(sys.argv[1], n_ctx=512, n_threads=1)
ask = dict(max_tokens=40, temperature=0.0)
want_a = llm("Once upon a time", **ask)["choices"][0]["text"]
want_b = llm("The little dog", **ask)["choices"][0]["text"]
it = llm("Once upon a time", stream=True, **ask)
parts = [next(it)["choices"][0]["text"]]  # read once, then left alone
box = {}
t = threading.Thread(target=lambda: box.update(b=llm("The little dog", **ask)["choices"][0]["text"]))
t.start()
t.join(20)
report("other-finished", lambda: not t.is_alive())
report("other-text", lambda: box.get("b") == want_b)
parts += [c["choices"][0]["text"] for c in it]
report("stream-text", lambda: "".join(parts) == want_a)
'''


def test_an_idle_stream_blocks_no_other_thread(stories260k: Path) -> None:
    child = Child(IDLE_STREAM, str(stories260k))
    assert child["other-finished"].message == "True"
    assert child["other-text"].message == "True"
    assert child["stream-text"].message == "True"  # the stream resumed exactly


# --- streams that pause and resume (one thread: nothing here can hang) -----------------------

@pytest.fixture(scope="module")
def llm(stories260k: Path) -> Iterator[Llama]:
    with Llama(stories260k, n_ctx=512, n_threads=1) as model:
        yield model


def _text(llm: Llama, prompt: str, **kw: Any) -> str:
    return str(llm(prompt, max_tokens=30, **kw)["choices"][0]["text"])


def _chunks(it: Any) -> Iterator[str]:
    for c in it:
        yield c["choices"][0]["text"]


@pytest.mark.parametrize("options", [
    {"temperature": 0.0},
    {"temperature": 0.8, "seed": 7},  # the stream's own chain (its RNG) goes on where it was
    {"temperature": 0.0, "logprobs": 2},
], ids=["greedy", "seeded", "logprobs"])
def test_interleaved_streams_each_resume_exactly(stories260k: Path, options: dict[str, Any]) -> None:
    # on the CPU: a resumed stream evaluates the displaced tokens again in one batch, which on
    # a GPU gives logits that differ by kernel noise (greedy near-ties, seeded draws can flip)
    with Llama(stories260k, n_ctx=512, n_threads=1, n_gpu_layers=0, backend_sampling=False) as llm:
        _interleave_and_compare(llm, options)


def test_a_backend_sampled_stream_that_was_interrupted_says_so(stories260k: Path) -> None:
    """A chain that samples on the backend (the GPU's default for a chain that does not
    begin with a top-k) cannot go on on the host nor be attached again: the interrupted
    stream ends cleanly and says so; the call that interrupted it gets a chain of its own
    (not the stream's, reset)."""
    options = {"temperature": 0.8, "top_k": 0, "seed": 7}
    with Llama(stories260k, n_ctx=512, n_threads=1, n_gpu_layers=0, backend_sampling=True) as llm:
        want = _text(llm, "The little dog", **options)
        first = llm("Once upon a time", max_tokens=30, stream=True, **options)
        next(first)  # type: ignore[call-overload]
        assert _text(llm, "The little dog", **options) == want
        with pytest.raises(StreamInterruptedError, match="backend sampling"):
            next(first)  # type: ignore[call-overload]
        assert _text(llm, "The little dog", **options) == want  # nothing was left behind


def _interleave_and_compare(llm: Llama, options: dict[str, Any]) -> None:
    prompts = ["Once upon a time", "The little dog", "Lily and Tom"]
    want = [_text(llm, p, **options) for p in prompts]
    streams = [_chunks(llm(p, max_tokens=30, stream=True, **options)) for p in prompts]
    got = ["", "", ""]
    live = [0, 1, 2]
    while live:  # one chunk of each in turn: every step interrupts another stream
        for i in list(live):
            try:
                got[i] += next(streams[i])
            except StopIteration:
                live.remove(i)
        llm.reset()  # and a reset between them
    assert got == want
    # the Llama's own bookkeeping stayed exact: prefix reuse after all that gives the same text
    assert _text(llm, prompts[0], temperature=0.0) == _text(llm, prompts[0], temperature=0.0)


def test_generate_resumes_after_another_call(llm: Llama) -> None:
    toks = llm.tokenize(b"Once upon a time")
    want = list(llm.generate(toks, max_tokens=20, temperature=0.0))
    it = llm.generate(toks, max_tokens=20, temperature=0.0)
    got = [next(it) for _ in range(5)]
    _text(llm, "The little dog", temperature=0.0)
    got += list(it)
    assert got == want


def test_a_multi_prompt_stream_that_was_interrupted_says_so(stories260k: Path) -> None:
    # on the CPU (exact greedy), with the engine's greedy samplers on the backend as on a GPU
    with Llama(stories260k, n_ctx=512, n_threads=1, n_seq_max=2, kv_unified=True, n_gpu_layers=0,
               backend_sampling=True) as llm:
        want = _text(llm, "Once upon a time", temperature=0.0)
        it = llm(["Once upon a time", "The little dog"], max_tokens=30, temperature=0.0, stream=True)
        next(it)  # type: ignore[call-overload]
        assert _text(llm, "Once upon a time", temperature=0.0) == want  # the call runs at once
        with pytest.raises(StreamInterruptedError, match="interrupted"):
            next(it)  # type: ignore[call-overload]
        assert _text(llm, "Once upon a time", temperature=0.0) == want  # and nothing is left behind


def test_a_speculative_stream_that_was_interrupted_says_so(stories260k: Path) -> None:
    with Llama(stories260k, n_ctx=512, n_threads=1, draft_model=LlamaPromptLookupDecoding(2)) as llm:
        want = _text(llm, "Once upon a time", temperature=0.0)
        it = llm("Once upon a time", max_tokens=30, temperature=0.0, stream=True)
        next(it)  # type: ignore[call-overload]
        assert _text(llm, "The little dog", temperature=0.0)
        with pytest.raises(StreamInterruptedError, match="speculatively"):
            next(it)  # type: ignore[call-overload]
        assert _text(llm, "Once upon a time", temperature=0.0) == want


def test_a_callback_that_calls_its_own_llama_gets_an_error(llm: Llama) -> None:
    def processor(ids: Any, logits: Any) -> Any:
        llm.reset()  # would deadlock (or corrupt the call) without the guard's check
        return logits

    with pytest.raises(Exception, match="already inside a call"):
        llm("Once", max_tokens=2, logits_processor=processor)
    assert _text(llm, "Once", temperature=0.0)  # still usable


# --- the vocabulary from several threads ----------------------------------------------------

def test_token_pieces_are_right_from_two_threads(stories260k: Path) -> None:
    """llama_token_to_piece releases the GIL: a shared buffer gave one thread another's bytes
    (and the piece cache kept them: ", there was a little.Lirl named")."""
    vocab = Vocab(Model(stories260k))
    n = vocab.n_tokens
    want = [vocab.token_to_piece(t) for t in range(n)]
    wrong = [0]

    def run() -> None:
        for _ in range(10):
            for t in range(n):
                vocab._piece_cache.pop((t, False), None)
                if vocab.token_to_piece(t) != want[t]:
                    wrong[0] += 1

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong[0] == 0


def test_abandoned_streams_leave_nothing_behind(llm: Llama) -> None:
    """A quick bounded check (the fuzzing run's leak loops are longer): a stream dropped after
    one chunk gives its claim back when it is collected, and memory stays flat."""
    import gc
    import tracemalloc

    def abandon(n: int) -> None:
        for _ in range(n):
            it = llm("Once upon a time", max_tokens=20, temperature=0.0, stream=True)
            next(it)  # type: ignore[call-overload]
            del it

    abandon(20)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    abandon(200)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert llm.engine.guard._user is None
    assert grown < 100_000, grown
