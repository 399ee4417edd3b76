"""Time to first token of a chat's next turn: a short prompt right after decoding, with
sampling options that change from turn to turn, ours beside llama-server of the same build.

    python bench/chat_turns.py --model ../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf --ngl 0
    python bench/chat_turns.py --model M.gguf --ngl 99 --fa on          # the GPU machine

Both servers (one slot each, started as subprocesses, stopped with SIGTERM) run at once and
get the same conversations, one request at a time, turn by turn: each turn goes to one
server, then to the other (which one first alternates), so that the machine's drift falls
on both; each is warmed with every option set first. Every turn streams /v1/completions
with the whole conversation so far as its prompt (the previous prompt, the previous answer, then a short
new user line of about --turn-words words), so that a server that reuses its cached prefix
evaluates only the new line, right after the previous turn's decoding. The options cycle
through greedy, temperature 0.8 with top-k 40 / top-p 0.95, temperature 0.5 with top-p 0.9
and min-p 0.1, and a repeat penalty, so consecutive turns never share them. Reported per
server: time to first token (the first chunk with text) p50 / p90 over all turns after the
first of each conversation, the same for the turn's whole time, and ours / llama-server
(below 1 is faster).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import server_load as sl
import server_vs_llama_server as sv

OPTIONS = [{"temperature": 0.0},
           {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05},
           {"temperature": 0.5, "top_k": 0, "top_p": 0.9, "min_p": 0.1},
           {"temperature": 0.7, "top_k": 40, "repeat_penalty": 1.1}]
WORDS = ("the a river stone quiet garden letter morning window bright story small old "
         "friend house music light road evening blue green child found went said asked").split()


def user_lines(args: argparse.Namespace) -> list[list[str]]:
    rng = random.Random(args.seed)
    return [[" ".join(rng.choice(WORDS) for _ in range(args.turn_words)) + "." for _ in range(args.turns)]
            for _ in range(args.conversations)]


def one_turn(client: httpx.Client, base: str, prompt: str, opts: dict[str, Any],
             args: argparse.Namespace, seed: int) -> tuple[float, float, str]:
    """(time to first text, whole time, the answer) of one streamed completion."""
    body = {"prompt": prompt, "max_tokens": args.max_tokens, "stream": True, "seed": seed, **opts}
    t0 = time.perf_counter()
    first = 0.0
    parts: list[str] = []
    # a connection per request (llama-server was seen closing a kept-alive one between
    # streams, which httpx reports as a disconnect): the same loopback connect for both
    with client.stream("POST", f"{base}/v1/completions", json=body, headers={"Connection": "close"}) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            text = json.loads(line[6:])["choices"][0].get("text") or ""
            if text and not first:
                first = time.perf_counter() - t0
            parts.append(text)
    return first, time.perf_counter() - t0, "".join(parts)


def measure(args: argparse.Namespace, llama_server: Path, log_dir: Path) -> dict[str, dict[str, Any]]:
    """Both servers at once, turn by turn: each turn goes to one then the other (which one
    first alternates), so that a drift of the machine (clocks, other load) falls on both
    alike; each server's conversation goes on with its own answers."""
    which = ("llama-server", "ours")
    procs: dict[str, Any] = {}
    bases: dict[str, str] = {}
    out: dict[str, dict[str, Any]] = {}
    try:
        for w in which:
            port = sl.free_port()
            cmd = sv.server_cmd(w, args, args.ctx, 1, port, llama_server)
            if w == "ours" and args.trace:  # the same flags, under the timeline's wrappers
                cmd[1:3] = [str(Path(__file__).with_name("trace_server.py")), str(args.trace.resolve())]
            out[w] = {"cmd": cmd, "ttft_ms": [], "turn_ms": [], "option": []}
            procs[w], bases[w] = sl.launch(out[w]["cmd"], log_dir / f"{w}.log"), f"http://127.0.0.1:{port}"
        for w in which:
            sl.wait_health(bases[w], procs[w], args.load_timeout)
        with httpx.Client(timeout=args.request_timeout) as client:
            for w in which:  # each option set once: a server's first use of one is not a next turn
                for k, opts in enumerate(OPTIONS):
                    one_turn(client, bases[w], "Warm up.", opts, args, k)
            for c, lines in enumerate(user_lines(args)):
                prompts = dict.fromkeys(which, f"Conversation {c}.\n")
                for t, line in enumerate(lines):
                    order = which if (c * len(lines) + t) % 2 == 0 else which[::-1]
                    for w in order:
                        prompts[w] += f"\nUser: {line}\nAssistant:"
                        opts, seed = OPTIONS[t % len(OPTIONS)], 1000 * c + t
                        first, total, answer = one_turn(client, bases[w], prompts[w], opts, args, seed)
                        prompts[w] += answer
                        if t > 0:  # the first turn of a conversation evaluates its whole prompt
                            out[w]["ttft_ms"].append(first * 1e3)
                            out[w]["turn_ms"].append(total * 1e3)
                            out[w]["option"].append(t % len(OPTIONS))
    finally:
        for w, proc in procs.items():
            out[w]["exit_status"] = sl.stop(proc, 30.0)
    return out


def pcts(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=10)
    return statistics.median(values), q[8]


def by_option(results: dict[str, Any], turns: int) -> list[str]:
    """TTFT p50 of each option set, both servers (a turn's options decide how its first token
    is sampled: on the GPU by ours for some, on the host by both for others). Results saved
    before the option was recorded get it from the turn's place: every conversation records
    its turns 1 to ``turns`` - 1 in order."""
    lines = []
    for k, opts in enumerate(OPTIONS):
        row = []
        for which in ("ours", "llama-server"):
            r = results[which]
            got = r.get("option") or [(1 + i % (turns - 1)) % len(OPTIONS) for i in range(len(r["ttft_ms"]))]
            v = [x for x, o in zip(r["ttft_ms"], got) if o == k]
            row.append(statistics.median(v) if v else float("nan"))
        lines.append(f"  {json.dumps(opts):66s} TTFT p50 ours {row[0]:7.2f} ms  llama-server {row[1]:7.2f} ms"
                     f"  ({row[0] - row[1]:+.2f})")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="required unless --report")
    ap.add_argument("--ngl", type=int, default=0)
    ap.add_argument("--fa", default="auto")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--conversations", type=int, default=4)
    ap.add_argument("--turns", type=int, default=9)
    ap.add_argument("--turn-words", type=int, default=10)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--load-timeout", type=float, default=300.0)
    ap.add_argument("--request-timeout", type=float, default=120.0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--log-dir", type=Path)
    ap.add_argument("--trace", type=Path, help="run ours under bench/trace_server.py, its timeline "
                    "of each request into this file (a diagnostic: the timing wrappers slow it)")
    ap.add_argument("--report", type=Path, help="only print the TTFT by option set of a saved --json")
    args = ap.parse_args()
    if args.report:
        saved = json.loads(args.report.read_text())
        print("\n".join(by_option(saved["results"], int(saved["args"]["turns"]))))
        return 0
    if args.model is None:
        ap.error("--model is required")
    args.kv_split = True  # one slot: llama-server's default layout, and ours the same
    args.ours_args = ""  # (server_vs_llama_server.server_cmd's more flags for ours: none)
    llama_server = sv.bin_dir() / "llama-server"
    if not llama_server.exists():
        raise SystemExit(f"{llama_server} not found: build with LLAMA_BINDING_TOOLS=ON "
                         "LLAMA_BINDING_SERVER_TOOL=ON")
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="chat-turns-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    results = measure(args, llama_server, log_dir)
    print(f"model {args.model.name}  ngl {args.ngl}  {args.conversations} conversations x "
          f"{args.turns} turns, ~{args.turn_words} words a turn, {args.max_tokens} tokens out, "
          "options change every turn")
    med = {}
    for which, r in results.items():
        (t50, t90), (w50, w90) = pcts(r["ttft_ms"]), pcts(r["turn_ms"])
        med[which] = (t50, w50)
        print(f"{which:>12}: TTFT p50 {t50:8.2f} ms  p90 {t90:8.2f} ms   "
              f"turn p50 {w50:8.2f} ms  p90 {w90:8.2f} ms   "
              f"({len(r['ttft_ms'])} turns, exit status {r['exit_status']})")
    ratio_t, ratio_w = med["ours"][0] / med["llama-server"][0], med["ours"][1] / med["llama-server"][1]
    print(f"ours / llama-server: TTFT p50 {ratio_t:.3f}x   turn p50 {ratio_w:.3f}x  (below 1: ours faster)")
    print("by option set:")
    print("\n".join(by_option(results, args.turns)))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "results": results, "ttft_ratio": ratio_t, "turn_ratio": ratio_w},
                                        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
