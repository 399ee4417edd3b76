"""Load generator for an OpenAI-compatible streaming server (ours or llama-server), loopback only.

    python bench/server_load.py --self-test                       # this client's own ceiling
    python bench/server_load.py --url http://127.0.0.1:8000 --clients 16 --seconds 20 \\
        --prompt-tokens 128 --max-tokens 128 --ignore-eos --pid 12345
    python bench/server_load.py --url http://127.0.0.1:8080 --clients 4 --seconds 10 --ignore-eos \\
        --launch 'llama-server -m M.gguf -np 4 --port 8080'   # starts it, waits for /health, stops it

--clients concurrent clients (httpx.AsyncClient, SSE parsed by hand: `data: ...` lines, then
`data: [DONE]`) each send one streaming request after another to /v1/completions or
/v1/chat/completions (--endpoint) for --seconds; requests in flight at the deadline finish
(up to --drain-timeout) and count. Every request gets its own prompt of --prompt-tokens
tokens: random common words, calibrated with the server's /tokenize when it has one; for
/v1/completions the prompt is sent as exactly that many token ids (drawn at random from a
tokenized random text), so both servers evaluate the same length and no request shares a
prefix with another (a prompt cache saves nothing). The same --seed gives the same prompts.

Reported: requests completed, errors (HTTP status not 200, an error event in the stream, a
stream without [DONE], a transport error: must be 0), streams without a finish_reason (must
be 0), TTFT p50/p99 (from sending the request to the first chunk that carries text),
inter-chunk latency p50/p99 (gaps between text chunks of one stream: one token per chunk on
both servers), generated tokens/s (completion tokens over the wall time from the first request
to the last completion; completion tokens from the usage the server reports with
stream_options.include_usage, else the count of text chunks), the per-stream decode rate p50
((chunks - 1) / (last chunk - first chunk); its mean times --clients estimates the decode rate
without the prompt phases, as llama-batched-bench's S_TG counts it) and, with --pid (or
--launch), the server's VmRSS at the start and at the end.

--self-test starts a trivial SSE server in a child process on 127.0.0.1 (raw asyncio, chunked
HTTP/1.1, keep-alive) that answers every request with --max-tokens chunks shaped like
llama-server's, as fast as it can, and runs the same load against it: the chunks/s it reports
is the ceiling of this client on this machine, which the real measurements must stay well below.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

import httpx

MAX_CLIENTS = 512
MAX_SECONDS = 600.0
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}

WORDS = (
    "the of and to in is was for on that with as by at from his her they this which have had one "
    "not but all were when there can an your more their if will up other about out many then them "
    "these so some would make like into him time has two look write go see number way could people "
    "than first water been call who oil its now find long down day did get come made may part over "
    "new sound take only little work know place year live me back give most very after thing our "
    "just name good sentence man think say great where help through much before line right too mean "
    "old any same tell boy follow came want show also around form three small set put end does "
    "another well large must big even such because turn here why ask went men read need land "
    "different home us move try kind hand picture again change off play spell air away animal house "
    "point page letter mother answer found study still learn should world high every near add food "
    "between own below country plant last school father keep tree never start city earth eye light "
    "thought head under story saw left few while along might close something seem next hard open "
    "example begin life always those both paper together got group often run important until "
    "children side feet car mile night walk white sea began grow took river four carry state once "
    "book hear stop without second later miss idea enough eat face watch far real almost let above "
    "girl sometimes mountain cut young talk soon list song being leave family"
).split()


# --------------------------------------------------------------------------- statistics
def pct(values: list[float], q: float) -> Optional[float]:
    """The q-th percentile (0..100) by linear interpolation; None for no values."""
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def read_rss_kib(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


# --------------------------------------------------------------------------- prompts
class Prompts:
    """Per-request prompts of about n tokens: text for chat, exactly n token ids for completions
    when the server tokenizes (else text)."""

    def __init__(self, n_tokens: int, seed: int) -> None:
        self.n = max(1, n_tokens)
        self.rng = random.Random(seed)
        self.words_per_token = 1.0
        self.pool: list[int] = []  # token ids of a long random text

    def _text(self, n_words: int) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(max(1, n_words)))

    async def calibrate(self, client: httpx.AsyncClient, base: str) -> Optional[str]:
        """Tokenize a random text with the server's /tokenize; returns why not, or None."""
        sample = self._text(max(2048, 8 * self.n))
        try:
            r = await client.post(f"{base}/tokenize", json={"content": sample, "add_special": False})
            tokens = r.json().get("tokens") if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as e:
            return f"/tokenize failed: {e!r}"
        if not tokens or not all(isinstance(t, int) for t in tokens):
            return f"/tokenize answered {r.status_code}: {r.text[:200]!r}"
        self.words_per_token = len(sample.split()) / len(tokens)
        self.pool = tokens
        return None

    def text(self) -> str:
        return self._text(round(self.n * self.words_per_token))

    def ids(self) -> Optional[list[int]]:
        # tokens drawn one by one from the pool: no two requests share more than a token or two of
        # prefix, so a server's prompt cache (llama-server's slot reuse) saves nothing
        if not self.pool:
            return None
        return [self.rng.choice(self.pool) for _ in range(self.n)]


# --------------------------------------------------------------------------- one stream
@dataclass
class Result:
    ok: bool = False
    error: Optional[str] = None
    status: Optional[int] = None
    retry_after: Optional[float] = None
    finish_reason: Optional[str] = None
    done: bool = False
    t_send: float = 0.0
    t_first: Optional[float] = None
    t_last: Optional[float] = None
    t_end: float = 0.0
    chunks: int = 0  # chunks carrying text
    usage_tokens: Optional[int] = None
    prompt_tokens: Optional[int] = None
    gaps: list[float] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return self.usage_tokens if self.usage_tokens is not None else self.chunks


def _chunk_text(choice: dict[str, Any]) -> Optional[str]:
    if "delta" in choice:
        d = choice.get("delta") or {}
        return d.get("content") if isinstance(d, dict) else None
    return choice.get("text")


async def one_request(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> Result:
    res = Result(t_send=time.perf_counter())
    try:
        async with client.stream("POST", url, json=body) as resp:
            res.status = resp.status_code
            if resp.status_code != 200:
                res.error = f"HTTP {resp.status_code}: {(await resp.aread())[:300]!r}"
                try:
                    res.retry_after = float(resp.headers.get("retry-after", ""))
                except ValueError:
                    pass
                return res
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, ": ping" comments, event: lines
                data = line[5:].strip()
                if data == "[DONE]":
                    res.done = True
                    break
                now = time.perf_counter()
                try:
                    chunk = json.loads(data)
                except ValueError:
                    res.error = f"bad chunk {data[:200]!r}"
                    return res
                if not isinstance(chunk, dict):
                    res.error = f"bad chunk {data[:200]!r}"
                    return res
                if "error" in chunk:
                    res.error = f"error event {data[:300]}"
                    return res
                usage = chunk.get("usage")
                if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
                    res.usage_tokens = int(usage["completion_tokens"])
                    res.prompt_tokens = usage.get("prompt_tokens")
                for choice in chunk.get("choices") or ():
                    text = _chunk_text(choice)
                    if text:
                        if res.t_last is not None:
                            res.gaps.append(now - res.t_last)
                        if res.t_first is None:
                            res.t_first = now
                        res.t_last = now
                        res.chunks += 1
                    if choice.get("finish_reason"):
                        res.finish_reason = choice["finish_reason"]
            if not res.done:
                res.error = "stream ended without [DONE]"
                return res
            res.ok = True
            return res
    except (httpx.HTTPError, OSError) as e:
        res.error = f"{type(e).__name__}: {e}"
        return res
    finally:
        res.t_end = time.perf_counter()


# --------------------------------------------------------------------------- the load
def build_body(args: argparse.Namespace, prompts: Prompts, seed: int,
               model: Optional[str] = None) -> dict[str, Any]:
    body: dict[str, Any] = {"max_tokens": args.max_tokens, "temperature": args.temperature,
                            "stream": True, "stream_options": {"include_usage": True}, "seed": seed}
    for name in ("top_k", "top_p", "min_p"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    if args.ignore_eos:
        body["ignore_eos"] = True
    if model or args.model_name:
        body["model"] = model or args.model_name.split(",")[0]
    if args.endpoint == "chat":
        body["messages"] = [{"role": "user", "content": prompts.text()}]
    else:
        ids = prompts.ids() if args.prompt_format != "text" else None
        body["prompt"] = ids if ids is not None else prompts.text()
    return body


async def run_requests(args: argparse.Namespace, base: str, pid: Optional[int] = None, quiet: bool = False,
                       ready: Optional[Any] = None) -> tuple[list[Result], float, int, Optional[int],
                                                             Optional[int]]:
    """The load of one process: (results, t0, streams cut at the drain timeout, RSS at start, at end).
    ready: a coroutine function awaited after the warm-up that returns the start time (perf_counter,
    CLOCK_MONOTONIC, the same in every process) when several processes start together."""
    path = "/v1/chat/completions" if args.endpoint == "chat" else "/v1/completions"
    url = base + path
    limits = httpx.Limits(max_connections=args.clients + 4, max_keepalive_connections=args.clients + 4)
    timeout = httpx.Timeout(connect=10.0, read=args.request_timeout, write=30.0, pool=30.0)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    prompts = Prompts(args.prompt_tokens, args.seed)
    async with httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False, headers=headers) as client:
        why = await prompts.calibrate(client, base)
        if why and not quiet:
            print(f"  (prompts: {why}; sending ~{args.prompt_tokens} words of text)", flush=True)
        seed_counter = iter(range(args.seed * 1_000_003, 2**62))
        for _ in range(args.warmup):  # one short request: first-use costs out of the measurement
            wbody = build_body(args, prompts, next(seed_counter))
            wbody["max_tokens"] = min(8, args.max_tokens)
            w = await one_request(client, url, wbody)
            if not w.ok and not quiet:
                print(f"  warm-up request failed: {w.error}", flush=True)
        if ready is not None:
            start_at = await ready()
            await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
        rss_start = read_rss_kib(pid) if pid else None
        results: list[Result] = []
        t0 = time.perf_counter()
        deadline = t0 + args.seconds

        names = args.model_name.split(",") if args.model_name else [None]

        async def worker(i: int) -> None:
            model = names[i % len(names)]  # client i asks model i mod n (--model-name a,b,c)
            while time.perf_counter() < deadline:
                r = await one_request(client, url, build_body(args, prompts, next(seed_counter), model))
                results.append(r)
                if r.status == 503:  # queue full (an error all the same): back off as told, 1 s at most
                    await asyncio.sleep(min(1.0, r.retry_after or 0.1))

        tasks = [asyncio.create_task(worker(i)) for i in range(args.clients)]
        done, pending = await asyncio.wait(tasks, timeout=args.seconds + args.drain_timeout)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        rss_end = read_rss_kib(pid) if pid else None
    for t in done:
        if t.exception() is not None:
            raise t.exception()  # type: ignore[misc]
    return results, t0, len(pending), rss_start, rss_end


async def run_load(args: argparse.Namespace, base: str, pid: Optional[int] = None,
                   quiet: bool = False) -> dict[str, Any]:
    """One process's load, summarized (what measure() runs when --procs is 1)."""
    results, t0, n_cut, rss_start, rss_end = await run_requests(args, base, pid, quiet)
    t_end = max([r.t_end for r in results], default=time.perf_counter())
    return summarize(args, results, t0, t_end, n_cut, rss_start, rss_end)


def measure(args: argparse.Namespace, base: str, pid: Optional[int] = None, quiet: bool = False,
            around: Optional[Callable[[str], None]] = None) -> dict[str, Any]:
    """The load of --clients clients, in one process or spread over --procs processes (each
    with its share of the clients and its own prompts), started together and summarized as one.
    ``around("start")`` runs right before the clients start (after their warm-up; with one
    process, before it) and ``around("end")`` once every one has finished (a caller reads the
    server's counters there)."""
    mark = around or (lambda _: None)
    procs = max(1, min(args.procs, args.clients))
    if procs == 1:
        mark("start")
        s = asyncio.run(run_load(args, base, pid, quiet))
        mark("end")
        return s
    children = []
    with tempfile.TemporaryDirectory(prefix="server_load-") as tmp:
        for i in range(procs):
            spec = dict(vars(args), clients=args.clients // procs + (1 if i < args.clients % procs else 0),
                        seed=args.seed * 7919 + i, procs=1, json=None)
            spec = {k: (str(v) if isinstance(v, Path) else v) for k, v in spec.items()}
            spec_path = Path(tmp) / f"spec{i}.json"
            out_path = str(Path(tmp) / f"out{i}.json")
            spec_path.write_text(json.dumps({"args": spec, "base": base, "out": out_path}))
            children.append(subprocess.Popen([sys.executable, __file__, "--worker-spec", str(spec_path)],
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        try:
            for c in children:  # each says "ready" after its warm-up
                line = c.stdout.readline() if c.stdout else ""
                if line.strip() != "ready":
                    raise RuntimeError(f"a client process failed before the start ({line.strip()!r})")
            mark("start")
            start_at = time.perf_counter() + 0.2
            rss_start = read_rss_kib(pid) if pid else None
            for c in children:
                assert c.stdin is not None
                c.stdin.write(f"{start_at}\n")
                c.stdin.flush()
            for c in children:
                if c.wait(args.seconds + args.drain_timeout + 60) != 0:
                    raise RuntimeError(f"a client process exited with {c.returncode}")
            mark("end")
            rss_end = read_rss_kib(pid) if pid else None
            results: list[Result] = []
            n_cut = 0
            for i in range(procs):
                out = json.loads((Path(tmp) / f"out{i}.json").read_text())
                results += [Result(**r) for r in out["results"]]
                n_cut += out["cut"]
        finally:
            for c in children:
                if c.poll() is None:
                    c.kill()
                    c.wait()
    t_end = max([r.t_end for r in results], default=start_at)
    s = summarize(args, results, start_at, t_end, n_cut, rss_start, rss_end)
    s["procs"] = procs
    return s


def worker_process(spec_path: Path) -> int:
    """A client process of measure(): warm up, say ready, read the start time, run, write raw results."""
    spec = json.loads(spec_path.read_text())
    args = argparse.Namespace(**spec["args"])

    async def ready() -> float:
        print("ready", flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        return float(line)

    results, _t0, n_cut, _, _ = asyncio.run(run_requests(args, spec["base"], None, True, ready))
    raw = {"results": [dataclasses.asdict(r) for r in results], "cut": n_cut}
    Path(spec["out"]).write_text(json.dumps(raw))
    return 0


def summarize(args: argparse.Namespace, results: list[Result], t0: float, t_end: float, n_cut: int,
              rss_start: Optional[int], rss_end: Optional[int]) -> dict[str, Any]:
    ok = [r for r in results if r.ok]
    errors = [r for r in results if not r.ok]
    ttft = [r.t_first - r.t_send for r in ok if r.t_first is not None]
    gaps = [g for r in ok for g in r.gaps]
    rates = [(r.chunks - 1) / (r.t_last - r.t_first) for r in ok
             if r.t_first is not None and r.t_last is not None and r.chunks > 1 and r.t_last > r.t_first]
    gen = sum(r.tokens for r in ok)
    wall = max(1e-9, t_end - t0)
    usage_seen = sum(1 for r in ok if r.usage_tokens is not None)
    prompt_tokens = [r.prompt_tokens for r in ok if isinstance(r.prompt_tokens, int)]
    finish: dict[str, int] = {}
    for r in ok:
        finish[str(r.finish_reason)] = finish.get(str(r.finish_reason), 0) + 1

    def ms(x: Optional[float]) -> Optional[float]:
        return None if x is None else round(x * 1e3, 3)

    return {
        "config": {k: getattr(args, k) for k in ("clients", "seconds", "prompt_tokens", "max_tokens",
                                                  "temperature", "endpoint", "ignore_eos")},
        "requests": len(ok), "errors": len(errors), "cut_at_drain_timeout": n_cut,
        "no_finish_reason": sum(1 for r in ok if not r.finish_reason), "finish_reasons": finish,
        "error_samples": [r.error for r in errors[:5]],
        "ttft_p50_ms": ms(pct(ttft, 50)), "ttft_p99_ms": ms(pct(ttft, 99)),
        "itl_p50_ms": ms(pct(gaps, 50)), "itl_p99_ms": ms(pct(gaps, 99)),
        "gen_tokens": gen, "wall_s": round(wall, 3), "gen_tps": round(gen / wall, 2),
        "stream_tps_p50": None if not rates else round(pct(rates, 50) or 0.0, 2),
        "stream_tps_mean": None if not rates else round(sum(rates) / len(rates), 2),
        "text_chunks": sum(r.chunks for r in ok), "usage_reported": usage_seen,
        "token_count_source": ("usage" if usage_seen == len(ok) and ok
                               else ("chunks" if not usage_seen else "mixed")),
        "prompt_tokens_mean": round(sum(prompt_tokens) / len(prompt_tokens), 1) if prompt_tokens else None,
        "rss_start_mib": None if rss_start is None else round(rss_start / 1024, 1),
        "rss_end_mib": None if rss_end is None else round(rss_end / 1024, 1),
    }


def report(s: dict[str, Any], label: str = "") -> None:
    c = s["config"]
    head = f"{label}  " if label else ""
    print(f"{head}clients {c['clients']}  {c['endpoint']}  prompt {c['prompt_tokens']}  max_tokens "
          f"{c['max_tokens']}  temperature {c['temperature']}  ignore_eos {c['ignore_eos']}")
    print(f"  requests {s['requests']}  errors {s['errors']}  no finish_reason {s['no_finish_reason']}"
          f"  cut {s['cut_at_drain_timeout']}  finish {s['finish_reasons']}")
    print(f"  TTFT p50 {s['ttft_p50_ms']} ms  p99 {s['ttft_p99_ms']} ms   "
          f"inter-token p50 {s['itl_p50_ms']} ms  p99 {s['itl_p99_ms']} ms")
    print(f"  generated {s['gen_tokens']} tokens ({s['token_count_source']}) in {s['wall_s']} s: "
          f"{s['gen_tps']} tokens/s   per-stream p50 {s['stream_tps_p50']} tokens/s   "
          f"prompt tokens (usage) {s['prompt_tokens_mean']}")
    if s["rss_start_mib"] is not None:
        print(f"  server RSS {s['rss_start_mib']} MiB at start, {s['rss_end_mib']} MiB at end")
    for e in s["error_samples"]:
        print(f"  error: {e}")


# --------------------------------------------------------------------------- launching a server
def check_loopback(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK:
        raise SystemExit(f"--url must be http://127.0.0.1:PORT (loopback only), not {url!r}")
    return url.rstrip("/")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_health(base: str, proc: Optional[subprocess.Popen[bytes]], timeout: float) -> None:
    t_end = time.monotonic() + timeout
    last = ""
    with httpx.Client(trust_env=False, timeout=5.0) as c:
        while time.monotonic() < t_end:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode} before /health answered")
            try:
                r = c.get(base + "/health")
                if r.status_code == 200:
                    return
                last = f"{r.status_code} {r.text[:100]}"
            except httpx.HTTPError as e:
                last = repr(e)
            time.sleep(0.25)
    raise RuntimeError(f"/health not 200 after {timeout} s (last: {last})")


def launch(cmd: list[str], log_path: Optional[Path]) -> subprocess.Popen[bytes]:
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        if log_path:
            log.close()  # type: ignore[union-attr]


def stop(proc: subprocess.Popen[bytes], grace: float = 30.0) -> Optional[int]:
    """SIGTERM to the process we started (its own session), then SIGKILL after grace."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


# --------------------------------------------------------------------------- the self-test server
def _sse_chunk(i: int, n: int, endpoint: str) -> bytes:
    now = int(time.time())
    if endpoint == "chat":
        choice: dict[str, Any] = {"index": 0, "delta": {"content": f" tok{i}"}, "finish_reason": None}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": f" tok{i}", "logprobs": None, "finish_reason": None}
        obj = "text_completion"
    if i == n - 1:
        choice["finish_reason"] = "length"
    body = {"choices": [choice], "created": now, "id": "cmpl-selftest0123456789abcdef", "model": "selftest",
            "system_fingerprint": "b0000-selftest", "object": obj}
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


async def _serve_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int,
                      interval: float) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            length = 0
            for h in lines[1:]:
                if h.lower().startswith("content-length:"):
                    length = int(h.split(":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            if method == "GET":  # /health
                payload = b'{"status":"ok"}'
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(payload)).encode() + b"\r\n\r\n" + payload)
                await writer.drain()
                continue
            if path == "/tokenize":
                content = json.loads(body or b"{}").get("content", "")
                payload = json.dumps({"tokens": list(range(len(content.split())))}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(payload)).encode() + b"\r\n\r\n" + payload)
                await writer.drain()
                continue
            req = json.loads(body or b"{}")
            count = int(req.get("max_tokens") or n)
            endpoint = "chat" if "chat" in path else "completions"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")

            def frame(data: bytes) -> bytes:
                return f"{len(data):x}\r\n".encode() + data + b"\r\n"

            for i in range(count):
                writer.write(frame(_sse_chunk(i, count, endpoint)))
                await writer.drain()  # one write per token, as a server flushes each token
                if interval > 0:
                    await asyncio.sleep(interval)  # paced: every chunk arrives in its own read
            usage = {"choices": [], "usage": {"completion_tokens": count, "prompt_tokens": 1,
                                              "total_tokens": count + 1}}
            writer.write(frame(b"data: " + json.dumps(usage).encode() + b"\n\n"))
            writer.write(frame(b"data: [DONE]\n\n") + b"0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def serve_fake(port: int, n: int, interval: float) -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: _serve_conn(r, w, n, interval), "127.0.0.1", port,
                                            backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# --------------------------------------------------------------------------- main
def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000", help="the server's base URL (loopback only)")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--top-k", type=int, default=None)
    ap.add_argument("--top-p", type=float, default=None)
    ap.add_argument("--min-p", type=float, default=None)
    ap.add_argument("--endpoint", choices=["completions", "chat"], default="completions")
    ap.add_argument("--prompt-format", choices=["auto", "text"], default="auto",
                    help="auto: token ids for /v1/completions when /tokenize works; text: always text")
    ap.add_argument("--ignore-eos", action="store_true", help='send "ignore_eos": true')
    ap.add_argument("--model-name", default=None,
                    help="the request's model field (default: none); a comma list spreads the clients "
                         "over several models (client i asks model i mod n; use --prompt-format text)")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1, help="short requests before the measurement")
    ap.add_argument("--request-timeout", type=float, default=300.0, help="read timeout of one stream (s)")
    ap.add_argument("--drain-timeout", type=float, default=120.0,
                    help="after --seconds, how long requests in flight may take to finish")
    ap.add_argument("--pid", type=int, default=None, help="the server's pid: report its VmRSS")
    ap.add_argument("--launch", default=None, help="'CMD ...': start the server, wait for /health, stop it")
    ap.add_argument("--launch-log", type=Path, default=None)
    ap.add_argument("--launch-timeout", type=float, default=600.0)
    ap.add_argument("--self-test", action="store_true",
                    help="measure this client against a trivial SSE server")
    ap.add_argument("--fake-interval-ms", type=float, default=0.0,
                    help="--self-test: pause between the chunks of a stream (0: as fast as possible; "
                         "1: every chunk comes in its own read, as from a real server)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--procs", type=int, default=1,
                    help="client processes the clients are spread over (for a load one process cannot carry)")
    ap.add_argument("--serve-fake", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker-spec", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS:
        ap.error(f"--clients must be 1..{MAX_CLIENTS}")
    if not 0 < args.seconds <= MAX_SECONDS:
        ap.error(f"--seconds must be in (0, {MAX_SECONDS}]")
    if args.drain_timeout > MAX_SECONDS:
        ap.error(f"--drain-timeout at most {MAX_SECONDS}")
    if not 1 <= args.procs <= 64:
        ap.error("--procs must be 1..64")
    if args.max_tokens < 1 or args.prompt_tokens < 1:
        ap.error("--max-tokens and --prompt-tokens must be positive")
    return args


def self_test(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve-fake", str(port), "--max-tokens",
                             str(args.max_tokens), "--fake-interval-ms", str(args.fake_interval_ms)],
                            start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_health(base, proc, 30.0)
        s = measure(args, base, pid=proc.pid, quiet=True)
    finally:
        stop(proc, 5.0)
    s["self_test"] = True
    s["chunks_per_s"] = round(s["text_chunks"] / s["wall_s"], 1)
    s["fake_interval_ms"] = args.fake_interval_ms
    return s


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.worker_spec is not None:
        return worker_process(args.worker_spec)
    if args.serve_fake is not None:
        serve_fake(args.serve_fake, args.max_tokens, args.fake_interval_ms / 1e3)
        return 0
    if args.self_test:
        s = self_test(args)
        report(s, "self-test")
        print(f"  client ceiling: {s['chunks_per_s']} chunks/s (SSE server in a separate process, same "
              f"machine, {args.fake_interval_ms} ms between a stream's chunks)")
    else:
        base = check_loopback(args.url)
        proc = None
        pid = args.pid
        if args.launch:
            proc = launch(shlex.split(args.launch), args.launch_log)
            pid = proc.pid
        try:
            wait_health(base, proc, args.launch_timeout if proc else 30.0)
            s = measure(args, base, pid=pid)
        finally:
            if proc is not None:
                s_rc = stop(proc)
                print(f"  launched server stopped, exit status {s_rc}")
        report(s)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(s, indent=1))
    bad = s["errors"] or s["no_finish_reason"] or s["cut_at_drain_timeout"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
