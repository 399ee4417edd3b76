"""Fuzz llama_binding through its public API, every case in a child interpreter.

Two corpora:

- GGUF: ``--count`` cases (default 1000) of tests/_gguf_fuzz.py's deterministic corpus
  (``--seed``): malformed or unusual GGUF files derived from stories260K and a tiny model;
- API misuse: the snippets in :data:`API_CASES` (threads, caches, grammars, JSON schema,
  logits, options) run against stories260K.

Cases run in groups (``--group``) per child; after a crash or a hang the next child goes on
with the case after it; each case has ``--timeout`` seconds. Prints the totals: cases, ok,
clean errors (llama_binding's exceptions, or a TypeError/ValueError naming the argument),
crashes (by signal or exit code), hangs and unclear errors, then every case that was not ok
or clean.

Against another checkout (to measure "before"): ``--src DIR`` imports llama_binding from
DIR in the children (ahead of an editable install), and ``LLAMA_BINDING_LIB_DIR`` (or
``--lib DIR``) names its native libraries::

    python bench/fuzz.py --count 300
    LLAMA_BINDING_LIB_DIR=/tmp/base_lib python bench/fuzz.py --src /tmp/base_src
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import _gguf_fuzz as gf  # noqa: E402

# (name, code run with `llm` = Llama(stories260K), `M` = its path, `tmp` = a scratch folder;
#  the argument names a clean TypeError/ValueError must mention)
API_CASES: list[tuple[str, str, tuple[str, ...]]] = [
    # threads
    ("threads/close-during-completion",
     "t = threading.Thread(target=lambda: (time.sleep(0.05), llm.close()))\nt.start()\n"
     "try:\n    llm.create_completion('Once', max_tokens=200)\nfinally:\n    t.join()", ()),
    ("threads/close-during-stream",
     "it = llm.create_completion('Once', max_tokens=200, stream=True)\nnext(it)\n"
     "t = threading.Thread(target=llm.close)\nt.start()\nt.join()\nlist(it)", ()),
    ("threads/reset-during-completion",
     "t = threading.Thread(target=lambda: [llm.reset() for _ in range(50)])\nt.start()\n"
     "llm.create_completion('Once', max_tokens=60)\nt.join()", ()),
    ("threads/two-completions",
     "ts = [threading.Thread(target=lambda: llm.create_completion('Once', max_tokens=30))\n"
     "      for _ in range(2)]\n"
     "[t.start() for t in ts]\n[t.join() for t in ts]", ()),
    ("threads/embed-during-close",
     "t = threading.Thread(target=lambda: (time.sleep(0.02), llm.close()))\nt.start()\n"
     "try:\n    [llm.tokenize(b'Once upon a time ' * 20) for _ in range(200)]\nfinally:\n    t.join()", ()),
    ("threads/call-behind-idle-stream",
     "it = llm.create_completion('Once', max_tokens=50, stream=True)\nnext(it)\n"
     "r = []\nt = threading.Thread(target=lambda: r.append(llm.create_completion('Once', max_tokens=2)),\n"
     "                     daemon=True)\n"
     "t.start()\nt.join(10)\nassert not t.is_alive(), 'blocked behind the idle stream'", ()),
    ("options/n_threads-10000", "Llama(M, n_ctx=64, n_threads=10000).create_completion('Once', max_tokens=2)",
     ("n_threads",)),
    ("options/n_threads-negative", "Llama(M, n_ctx=64, n_threads=-5).create_completion('Once', max_tokens=2)",
     ("n_threads",)),
    ("options/seed-float", "Llama(M, n_ctx=64, seed=1.5)", ("seed",)),
    ("options/n_batch-huge", "Llama(M, n_ctx=64, n_batch=2**40)", ("n_batch",)),
    # caches
    ("caches/ram-cache-tiny", "llm.set_cache(LlamaRAMCache(capacity_bytes=1))\n"
     "[llm.create_completion('Once upon', max_tokens=2) for _ in range(3)]", ()),
    ("caches/disk-cache-truncated",
     "d = os.path.join(tmp, 'dc')\nc = LlamaDiskCache(d)\nllm.set_cache(c)\n"
     "llm.create_completion('Once upon', max_tokens=2)\n"
     "for f in os.listdir(d):\n    open(os.path.join(d, f), 'r+b').truncate(10)\n"
     "llm.create_completion('Once upon', max_tokens=2)", ()),
    ("caches/disk-cache-emptied",
     "d = os.path.join(tmp, 'dc2')\nc = LlamaDiskCache(d)\nllm.set_cache(c)\n"
     "llm.create_completion('Once upon', max_tokens=2)\n"
     "for f in os.listdir(d):\n    open(os.path.join(d, f), 'wb').close()\n"
     "llm.create_completion('Once upon', max_tokens=2)", ()),
    ("caches/disk-cache-garbage",
     "d = os.path.join(tmp, 'dc3')\nos.makedirs(d)\n"
     "open(os.path.join(d, 'cache.db'), 'wb').write(b'x' * 5000)\n"
     "llm.set_cache(LlamaDiskCache(d))\nllm.create_completion('Once upon', max_tokens=2)", ()),
    ("caches/state-random-payload",
     "s = llm.save_state()\nimport dataclasses\n"
     "fields = {f.name: getattr(s, f.name) for f in dataclasses.fields(s)}\n"
     "fields = {k: (os.urandom(len(v)) if isinstance(v, bytes) else v) for k, v in fields.items()}\n"
     "llm.load_state(type(s)(**fields))", ()),
    # grammars
    ("grammar/reversed-range", "llm.create_completion('Once', max_tokens=4, grammar='root ::= [z-a]')", ()),
    ("grammar/huge-code-point",
     "llm.create_completion('Once', max_tokens=4, grammar='root ::= \"\\\\U7fffffff\"')", ()),
    ("grammar/nul-in-literal",
     "llm.create_completion('Once', max_tokens=4, grammar='root ::= \"a\\x00b\"')", ()),
    ("grammar/huge-token-id", "llm.create_completion('Once', max_tokens=4, grammar='root ::= <[999999999]>')",
     ()),
    ("grammar/crlf",
     "llm.create_completion('Once', max_tokens=4, grammar='root ::= \"a\" b\\r\\nb ::= \"c\"\\r\\n')", ()),
    ("grammar/empty", "llm.create_completion('Once', max_tokens=4, grammar='')", ("grammar",)),
    ("grammar/left-recursion",
     "llm.create_completion('Once', max_tokens=4, grammar='root ::= root \"a\"')", ()),
    ("grammar/deep-nesting",
     "llm.create_completion('Once', max_tokens=4,\n"
     "                      grammar='root ::= ' + '(' * 3000 + '\"a\"' + ')' * 3000)", ()),
    ("grammar/undefined-rule", "llm.create_completion('Once', max_tokens=4, grammar='root ::= foo')", ()),
    # JSON schema
    ("json/maxLength", "r = llm.create_chat_completion([{'role': 'user', 'content': 'hi'}], max_tokens=20, "
     "response_format={'type': 'json_object', 'schema': {'type': 'string', 'maxLength': 4}})", ()),
    ("json/json_object", "llm.create_chat_completion([{'role': 'user', 'content': 'hi'}], max_tokens=8, "
     "response_format={'type': 'json_object'})", ()),
    ("json/bad-ref", "llm.create_chat_completion([{'role': 'user', 'content': 'hi'}], max_tokens=8, "
     "response_format={'type': 'json_object', 'schema': {'$ref': '#/nope'}})", ("schema", "$ref")),
    ("json/empty-range", "llm.create_chat_completion([{'role': 'user', 'content': 'hi'}], max_tokens=8, "
     "response_format={'type': 'json_object', 'schema': {'type': 'integer', 'minimum': 5, 'maximum': 1}})",
     ("schema", "minimum", "maximum")),
    ("json/bad-pattern", "llm.create_chat_completion([{'role': 'user', 'content': 'hi'}], max_tokens=8, "
     "response_format={'type': 'json_object', 'schema': {'type': 'string', 'pattern': '(['}})",
     ("schema", "pattern")),
    ("json/not-a-schema", "llm.create_chat_completion([{'role': 'user', 'content': 'hi'}], max_tokens=8, "
     "response_format={'type': 'json_object', 'schema': 5})", ("schema", "response_format")),
    ("json/200-optional-properties",
     "llm.create_chat_completion([{'role': 'user', 'content': 'hi'}], max_tokens=8, "
     "response_format={'type': 'json_object', 'schema': {'type': 'object', 'properties': "
     "{f'p{i}': {'type': 'integer'} for i in range(200)}}})", ()),
    # logits
    ("logits/bias-all-minus-inf",
     "llm.create_completion('Once', max_tokens=4,\n"
     "                      logit_bias={i: float('-inf') for i in range(llm.n_vocab())})", ()),
    ("logits/processor-nan",
     "import numpy as np\nllm.create_completion('Once', max_tokens=4, "
     "logits_processor=lambda ids, scores: np.full_like(scores, np.nan))", ()),
    ("logits/bias-out-of-range", "llm.create_completion('Once', max_tokens=4, logit_bias={10**9: 5.0})",
     ("logit_bias",)),
    ("logits/bias-string-key", "llm.create_completion('Once', max_tokens=4, logit_bias={'x': 5.0})",
     ("logit_bias",)),
    ("logits/temperature-nan", "llm.create_completion('Once', max_tokens=4, temperature=float('nan'))",
     ("temperature",)),
    ("logits/logprobs-negative", "llm.create_completion('Once', max_tokens=4, logprobs=-1)", ("logprobs",)),
    ("logits/top_k-negative", "llm.create_completion('Once', max_tokens=4, top_k=-1)", ()),
    ("logits/max_tokens-negative", "llm.create_completion('Once', max_tokens=-1)", ()),
    ("logits/stop-empty-string", "llm.create_completion('Once', max_tokens=4, stop=[''])", ()),
    # text
    ("text/surrogates", "llm.tokenize('a\\ud800b'.encode('utf-8', 'surrogatepass'))", ()),
    ("text/surrogate-str-prompt", "llm.create_completion('a\\ud800b', max_tokens=2)", ("prompt",)),
    ("text/special-token-injection", "llm.create_chat_completion([{'role': 'user', "
     "'content': '<|im_start|>system'}], max_tokens=2)", ()),
]

API_PRELUDE = """
import os, sys, threading, time, tempfile
from llama_binding import Llama, LlamaDiskCache, LlamaRAMCache
"""


def api_child(path: str, names: Sequence[str]) -> None:
    gf._prepare_child()
    import tempfile

    table = {name: (code, argnames) for name, code, argnames in API_CASES}
    for name in names:
        code, argnames = table[name]

        def run(code: str = code) -> None:
            from llama_binding import Llama

            scope: dict[str, object] = {}
            exec(API_PRELUDE, scope)
            scope["M"], scope["tmp"] = path, tempfile.mkdtemp(prefix="api-fuzz-")
            scope["llm"] = Llama(path, n_ctx=256, n_threads=1, verbose=False)
            exec(code, scope)

        gf.report(name, name, run, argnames)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1000, help="GGUF cases (default 1000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--group", type=int, default=10, help="cases per child (default 10)")
    ap.add_argument("--timeout", type=float, default=30, help="seconds per case (default 30)")
    ap.add_argument("--src", help="a source tree whose llama_binding the children import")
    ap.add_argument("--lib", help="its native libraries (sets LLAMA_BINDING_LIB_DIR)")
    ap.add_argument("--no-api", action="store_true", help="skip the API-misuse snippets")
    ap.add_argument("--only", help="run only cases whose name contains this")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every case's outcome")
    ap.add_argument("--child-api", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_api:
        api_child(args.child_api[0], args.child_api[1:])
        return 0
    env = gf.child_env(args.src)
    if args.lib:
        env["LLAMA_BINDING_LIB_DIR"] = str(Path(args.lib).resolve())
    stories = str(gf.STORIES)
    if not Path(stories).is_file():
        print(f"stories260K.gguf not found at {stories} (set LLAMA_BINDING_MODELS)", file=sys.stderr)
        return 2
    started = time.monotonic()
    gguf_ids = [str(i) for i in range(args.count)]
    names = {i: gf.case_name(args.seed, int(i)) for i in gguf_ids}
    if args.only:
        gguf_ids = [i for i in gguf_ids if args.only in names[i]]
    results = gf.run_cases(
        gguf_ids,
        lambda ids: [sys.executable, str(REPO / "tests" / "_gguf_fuzz.py"), "--child", str(args.seed), *ids],
        per_case=args.timeout, group=args.group, env=env, names=names)
    if not args.no_api:
        api_ids = [name for name, _, _ in API_CASES if not args.only or args.only in name]
        results += gf.run_cases(
            api_ids,
            lambda ids: [sys.executable, str(Path(__file__).resolve()), "--child-api", stories, *ids],
            per_case=args.timeout, group=args.group, env=env, names={n: n for n in api_ids})
    elapsed = time.monotonic() - started
    totals = collections.Counter(r.outcome for r in results)
    src = args.src or str(REPO)
    lib = env.get("LLAMA_BINDING_LIB_DIR", "(the package's own)")
    print(f"llama_binding from {src}, libraries {lib}; seed {args.seed}; {elapsed:.0f} s")
    for label, rs in (("GGUF", [r for r in results if r.case.isdigit()]),
                      ("API", [r for r in results if not r.case.isdigit()]), ("all", results)):
        c = collections.Counter(r.outcome for r in rs)
        print(f"{label:>5}: cases {len(rs)}, ok {c['ok']}, clean errors {c['clean']}, crashes {c['crash']}, "
              f"hangs {c['hang']}, unclear errors {c['unclear']}")
    if args.verbose:
        print("\nevery case:")
        for r in results:
            print(f"  {r.outcome:8} {r.name}\n           {r.detail[:300]}")
    bad = [r for r in results if r.outcome not in ("ok", "clean")]
    if bad:
        print("\nfailing cases:")
        for r in sorted(bad, key=lambda r: (r.outcome, r.name)):
            print(f"  {r.outcome:8} {r.name}\n           {r.detail[:400]}")
    return 1 if totals["crash"] or totals["hang"] else 0


if __name__ == "__main__":
    sys.exit(main())
