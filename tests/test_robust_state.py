"""Memory blow-ups turned into clear errors before llama.cpp allocates, and pickles that
refuse another model.

- ``n_ctx=10**9`` made llama.cpp build 52 bytes of bookkeeping per KV cell (and the K/V
  tensors) before ``std::bad_alloc``: many GB of RSS. The KV cache is now estimated first.
- A saved state with a valid header and checksum but a forged payload made llama.cpp
  allocate the architecture name's length as read (up to 4 GiB). The payload's leading
  fields and the recorded tokens are now checked first.

The cases that could blow up run in a child interpreter that reports its peak RSS.
"""

from __future__ import annotations

import logging
import pickle
import shutil
from pathlib import Path

import pytest
from _child import Child, raised

from llama_binding import Llama
from llama_binding.core._memory import CELL_BYTES, estimate_kv
from llama_binding.errors import StateError

MAX_RSS_MB = 500
# VmHWM: the peak RSS of this process image (ru_maxrss would carry the forking pytest's peak over exec)
RSS = ("report('rss', lambda: next(int(line.split()[1]) // 1024 for line in open('/proc/self/status')\n"
       "                             if line.startswith('VmHWM:')))\n")


def _rss_mb(child: Child) -> int:
    return int(child["rss"].message)


# --- n_ctx and the KV cache ---------------------------------------------------------------


@pytest.mark.parametrize("model", ["stories260k", "smollm2"])
def test_a_huge_n_ctx_is_refused_before_allocating(model: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(model)
    child = Child("report('huge', lambda: Llama(sys.argv[1], n_ctx=10**9, n_threads=1))\n"
                  "report('fits-after', lambda: Llama(sys.argv[1], n_ctx=512, n_threads=1).n_ctx())\n" + RSS,
                  str(path), timeout=30)
    raised(child["huge"], "ContextCreateError",
           naming=("n_ctx=1000000000", "does not fit", "GiB", "available"))
    assert child["fits-after"].message == "512"
    assert _rss_mb(child) < MAX_RSS_MB, f"peak RSS {_rss_mb(child)} MB"


@pytest.mark.parametrize("model", ["stories260k", "smollm2"])
def test_the_training_context_and_beyond_still_work(model: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(model)
    with Llama(path, n_ctx=0, n_threads=1) as llm:  # 0: the training context
        n_train = llm.engine.model.n_ctx_train
        assert llm.n_ctx() == n_train
    if model == "stories260k":  # beyond it: llama.cpp's warning, no refusal while it fits
        with Llama(path, n_ctx=4 * n_train, n_threads=1) as llm:
            assert llm.n_ctx() == 4 * n_train


def test_the_estimate_is_llama_cpps_kv_size(smollm2: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The K/V tensors estimated from the hyperparameters are what llama.cpp allocates."""
    with caplog.at_level(logging.DEBUG, logger="llama_binding"):
        llm = Llama(smollm2, n_ctx=1024, n_threads=1, verbose=True)
    try:
        est = estimate_kv(llm.engine.model.ptr, llm.context_params.to_c())
        sizes = [r.getMessage() for r in caplog.records if "KV buffer size" in r.getMessage()]
        assert sizes, "llama.cpp logged no KV buffer size"
        mib = float(sizes[-1].split("=")[-1].split("MiB")[0])
        assert est.tensors == int(mib * 2**20)
        assert est.cells == 1024 and est.host == 1024 * CELL_BYTES
    finally:
        llm.close()


# --- forged saved states --------------------------------------------------------------------

STATES = r'''
import dataclasses, os, struct
from llama_binding.core.state import LlamaState
llm = Llama(sys.argv[1], n_ctx=256, n_threads=1)
llm.create_completion("Once upon a time", max_tokens=4, temperature=0.0)
whole, seq = llm.save_state(), llm.save_state(0)
want = llm.create_completion("Once upon a time", max_tokens=8, temperature=0.0)["choices"][0]["text"]

def load(state, **changes):
    # what an attacker can write: any header and payload, re-signed (the SHA-256 is no MAC)
    return llm.load_state(LlamaState.from_bytes(dataclasses.replace(state, **changes).to_bytes()))

def patched(payload, at, value):
    p = bytearray(payload); struct.pack_into("<I", p, at, value); return bytes(p)

arch = len(b"llama") + 4
report("random", lambda: load(whole, payload=os.urandom(len(whole.payload))))
report("arch-length", lambda: load(whole, payload=patched(whole.payload, 0, 0xFFFFFFF0)))
report("random-after-arch", lambda: load(whole, payload=whole.payload[:arch] + os.urandom(4096)))
report("cells", lambda: load(whole, payload=patched(whole.payload, arch + 4, 0xFFFFFFFF)))
report("streams", lambda: load(whole, payload=patched(whole.payload, arch, 0xFFFFFFFF)))
report("seq-random", lambda: load(seq, payload=os.urandom(len(seq.payload))))
report("seq-cells", lambda: load(seq, payload=patched(seq.payload, 12, 0xFFFFFFFF)))
report("tokens", lambda: load(whole, tokens=tuple(range(100)) * 1000))
report("token-ids", lambda: load(whole, tokens=(1, 2, 10**6)))
report("scope", lambda: load(whole, scope="everything"))
report("after-refusals", lambda: llm.n_tokens)
report("genuine", lambda: (load(whole), llm.n_tokens == len(whole.tokens) > 0)[1])
report("same-text", lambda: llm.create_completion("Once upon a time", max_tokens=8,
                                                   temperature=0.0)["choices"][0]["text"] == want)
'''


@pytest.fixture(scope="module")
def states(stories260k: Path) -> Child:
    return Child(STATES + RSS, str(stories260k), timeout=60)


@pytest.mark.parametrize("label, naming", [
    ("random", ("architecture",)),
    ("arch-length", ("architecture",)),
    ("random-after-arch", ("refused",)),
    ("cells", ("cells",)),
    ("streams", ("n_stream",)),
    ("seq-random", ("magic",)),
    ("seq-cells", ("cells",)),
    ("tokens", ("100000 tokens", "256")),
    ("token-ids", ("vocabulary",)),
    ("scope", ("scope",)),
])
def test_a_forged_state_fails_fast(states: Child, label: str, naming: tuple[str, ...]) -> None:
    raised(states[label], "StateError", naming=naming)


def test_forged_states_take_no_memory_and_a_genuine_one_still_loads(states: Child) -> None:
    assert _rss_mb(states) < MAX_RSS_MB, f"peak RSS {_rss_mb(states)} MB"
    assert states["after-refusals"].message == "0"  # a refused payload leaves the context empty
    assert states["genuine"].message == "True", states["genuine"]
    assert states["same-text"].message == "True"


# --- pickles ---------------------------------------------------------------------------------


def test_unpickling_refuses_a_replaced_model_file(tmp_path: Path, stories260k: Path, smollm2: Path) -> None:
    path = tmp_path / "model.gguf"
    shutil.copyfile(stories260k, path)
    with Llama(path, n_ctx=128, n_threads=1) as llm:
        data = pickle.dumps(llm)
    clone = pickle.loads(data)  # the same file: fine
    clone.close()
    shutil.copyfile(smollm2, path)  # another model at the same path
    with pytest.raises(StateError, match="no longer the model it was pickled with"):
        pickle.loads(data)
