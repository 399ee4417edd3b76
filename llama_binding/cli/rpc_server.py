"""``llama-binding rpc-server``: serve this machine's devices to llama.cpp RPC clients.

A client loads a model with ``Llama(..., rpc_servers="HOST:PORT")`` (or ``--rpc-servers``
of ``run``/``serve``) and puts layers on this worker's devices (default: every GPU, else the
CPU). The worker runs llama.cpp's own server (``ggml_backend_rpc_start_server``) with this
package's libraries, so client and worker must come from the same version. It binds to
127.0.0.1 unless told otherwise: the protocol has no authentication and no encryption, so
anyone who reaches the port can use the devices and read what they hold. SIGTERM or Ctrl-C
stops it (exit code 0).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
import threading

from .. import rpc
from ..errors import LlamaError
from .output import Output

__all__ = ["build_parser", "run"]

UNSAFE = ("the RPC protocol has no authentication and no encryption: anyone who reaches {where} can use "
          "this machine's devices and read what they hold; run it only on a network you trust")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llama-binding rpc-server", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=50052,
                   help="TCP port (default 50052, as llama.cpp's rpc-server)")
    p.add_argument("--device", "-d", action="append", default=[],
                   help="a device to serve by name (CPU, CUDA0, ...; repeatable or comma-separated; "
                        "default: every GPU, else the CPU)")
    p.add_argument("--cache", metavar="DIR", help="keep large tensors the clients send in DIR, so a model "
                   "loads faster the next time")
    p.add_argument("--threads", "-t", type=int, help="CPU threads (default: all cores)")
    return p


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run(argv: list[str], out: Output | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = out or Output()
    if not 0 < args.port < 65536:
        out.error(f"--port {args.port} is not a TCP port")
        return 2
    names = [n.strip() for item in args.device for n in item.split(",") if n.strip()]
    try:
        devices = rpc.worker_devices(names)
    except (LlamaError, ValueError) as exc:
        out.error(str(exc))
        return 1
    if not _is_loopback(args.host):
        out.note("warning: " + UNSAFE.format(where=f"{args.host}:{args.port}"))
    failed: list[BaseException] = []

    def serve() -> None:
        try:
            rpc.serve(args.host, args.port, devices, args.cache, args.threads)
        except BaseException as exc:
            failed.append(exc)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker = threading.Thread(target=serve, name="llama-binding rpc-server", daemon=True)
    worker.start()
    while worker.is_alive() and not stop.wait(0.2):
        pass
    if failed:
        out.error(str(failed[0]))
        return 1
    out.note("stopped")
    sys.stdout.flush()
    sys.stderr.flush()
    # the server thread waits inside accept(): leave without running C++ exit handlers under it
    os._exit(0)
