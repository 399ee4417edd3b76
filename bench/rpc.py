"""Prefill and decode tokens/s with the model's layers on llama.cpp RPC workers, against the
same model all local, measured in the same run (llama_binding.benchmark, as llama-bench).

Workers are ``llama-binding rpc-server`` child processes: on loopback (127.0.0.2, 127.0.0.3),
and with ``--netns`` one in a network namespace of its own reached through a veth pair, with
a round trip added by ``tc netem`` (``--delays-ms 0,1,5``; needs root, ``ip`` and ``tc``).
Where the kernel has no netem (or without ``--netns``), the round trips are added by a proxy
in this process on loopback instead, which holds each piece of data half the round trip in
each direction.

    python bench/rpc.py MODEL [--n-prompt 128 --n-gen 32 --threads 2] [--netns] [--device CUDA0]

On a GPU machine ``--device CUDA0`` serves the GPU from the worker and ``--local-ngl -1``
compares with the model loaded on that GPU in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from llama_binding import Llama, RpcError
from llama_binding.benchmark import measure_decode, measure_prefill
from llama_binding.rpc import check_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _netns import NS, NS_IP, namespace, set_delay


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def worker(host: str, threads: int, device: str | None, prefix: Sequence[str] = ()) -> Iterator[str]:
    port = _free_port(host if not prefix else "127.0.0.1")
    cmd = [*prefix, sys.executable, "-m", "llama_binding", "rpc-server", "--host", host, "--port", str(port),
           "--threads", str(threads), *(["--device", device] if device else [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"{host}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                check_server(endpoint, timeout=1.0)
                break
            except RpcError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def delay_proxy(target: str, rtt_ms: float) -> Iterator[str]:
    """A TCP proxy on 127.0.0.4 to ``target`` that holds each piece of data rtt/2 in each
    direction, in order (latency, not bandwidth): where the kernel has no netem."""
    host, port = target.rsplit(":", 1)
    half = rtt_ms / 2000.0
    loop = asyncio.new_event_loop()

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    writer.close()
                    return
                await asyncio.sleep(max(0.0, due - loop.time()))
                writer.write(data)
                await writer.drain()

        sender = loop.create_task(send())
        while data := await reader.read(1 << 20):
            queue.put_nowait((loop.time() + half, data))
        queue.put_nowait((0.0, b""))
        await sender

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer), return_exceptions=True)

    server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.4", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.4:{server.sockets[0].getsockname()[1]}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def run_one(model: str, args: argparse.Namespace, servers: str | None, ngl: int) -> dict[str, Any]:
    kw: dict[str, Any] = {"n_ctx": max(args.n_prompt, args.n_gen + 1), "n_batch": args.n_prompt,
                          "n_threads": args.threads, "n_gpu_layers": ngl}
    if servers:
        kw["rpc_servers"] = servers
    with Llama(model, **kw) as llm:
        pp = measure_prefill(llm, args.n_prompt, reps=args.reps)
        tg = measure_decode(llm, args.n_gen, reps=args.reps)
    return {"pp": pp.median, "tg": tg.median}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--n-prompt", type=int, default=128)
    p.add_argument("--n-gen", type=int, default=32)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", help="the workers' device (default: their GPUs, else CPU)")
    p.add_argument("--local-ngl", type=int, default=0, help="n_gpu_layers of the all-local run")
    p.add_argument("--netns", action="store_true", help="also a worker in a network namespace, with delays")
    p.add_argument("--delays-ms", default="0,1,5", help="round trips added in the namespace runs "
                   "(where the kernel has no netem: by a proxy in this process, on loopback)")
    args = p.parse_args()
    rows: list[tuple[str, dict[str, Any]]] = [("all local", run_one(args.model, args, None, args.local_ngl))]
    notes: list[str] = []
    with worker("127.0.0.2", args.threads, args.device) as a:
        rows.append(("1 worker, loopback", run_one(args.model, args, a, -1)))
        with worker("127.0.0.3", args.threads, args.device) as b:
            rows.append(("2 workers, loopback", run_one(args.model, args, f"{a},{b}", -1)))
    if args.netns:
        with namespace(), worker(NS_IP, args.threads, args.device, ("ip", "netns", "exec", NS)) as c:
            for ms in (float(x) for x in args.delays_ms.split(",")):
                if not set_delay(ms):
                    notes.append(f"+{ms:g} ms: this kernel has no netem (tc qdisc netem): see the proxy rows")
                    continue
                rows.append((f"1 worker, netns +{ms:g} ms RTT", run_one(args.model, args, c, -1)))
            set_delay(0)
    if notes or not args.netns:  # the round trips by a proxy instead
        with worker("127.0.0.2", args.threads, args.device) as a:
            for ms in (float(x) for x in args.delays_ms.split(",")):
                with delay_proxy(a, ms) as proxied:
                    rows.append((f"1 worker, proxy +{ms:g} ms RTT", run_one(args.model, args, proxied, -1)))
    base = rows[0][1]
    print(f"model {args.model}  pp{args.n_prompt} / tg{args.n_gen}, median of {args.reps}, "
          f"{args.threads} threads per process")
    print(f"{'':34} {'pp t/s':>10} {'ratio':>6} {'tg t/s':>10} {'ratio':>6}")
    for name, r in rows:
        pp, tg = r["pp"], r["tg"]
        print(f"{name:34} {pp:10.1f} {pp / base['pp']:6.3f} {tg:10.1f} {tg / base['tg']:6.3f}")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
