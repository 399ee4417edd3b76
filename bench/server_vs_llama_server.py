"""Our server beside llama-server of the same build, under the same streaming load, with
llama-batched-bench's S_TG as the engine's ceiling.

    python bench/server_vs_llama_server.py --model ../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --clients 4 --ngl 0 --seconds 10                                  # this CPU machine
    python bench/server_vs_llama_server.py --model M.gguf --ngl 99 --fa on --clients 1,16,64   # a GPU

The workload (bench/server_load.py): every client streams one /v1/completions request after
another, each a prompt of --npp token ids (a random window of a tokenized random text, so
both servers evaluate exactly that many) and --ntg generated tokens with ignore_eos, for
--seconds per point; greedy (temperature 0) and sampled (temperature 0.8, top-k 40, top-p
0.95, min-p 0.05, seeded), at each client count of --clients. The tools come from the
package's bin folder (beside the lib folder the package loads, or $LLAMA_BINDING_LIB_DIR/../bin):

- llama-batched-bench -npp NPP -ntg NTG -npl CLIENTS -kvu, same context, batch sizes, flash
  attention, offload: S_TG, its generation-phase tokens/s, the same for both modes (it
  samples nothing); run --bb-reps times (3), the run with the highest S_TG taken;
- llama-server -m MODEL -np MAX -kvu -c CTX -fa FA -ngl NGL -b 2048 -ub 512 --port P;
- python -m llama_binding.server --model MODEL --n-seq-max MAX --n-ctx CTX --flash-attn FA
  --n-gpu-layers NGL --n-batch 2048 --n-ubatch 512 --port P.

Each server is started as a subprocess, measured at every point (clients x mode), then
stopped (SIGTERM; its exit status is reported) before the next one starts. Per point the
table shows generated tokens/s of both servers (completion tokens over the wall time of the
run: prompt evaluation and the streams' ramp included, which S_TG leaves out), ours/S_TG,
ours/llama-server and TTFT p50 of both; errors and streams without a finish_reason must be 0.
A second table sets ours beside llama-batched-bench's generated tokens over its whole time,
prompts included (pl x ntg / t): the same work per request as the servers do. A third
estimates the decode rate alone (clients x the mean per-stream rate between a stream's
first and last token) beside S_TG.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import server_load as sl

MODES = {"greedy": {"temperature": 0.0},
         "t0.8": {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05}}


def bin_dir() -> Path:
    """The package's bin folder: beside $LLAMA_BINDING_LIB_DIR, else beside the first lib folder
    that holds libllama (without loading it), else beside the one the loader picks."""
    from llama_binding.capi import _loader

    env = os.environ.get(_loader.ENV_LIB_DIR)
    if env:
        return Path(env).expanduser().parent / "bin"
    for d in _loader.candidate_dirs():
        if (d / _loader.library_filename("llama")).exists():
            return d.parent / "bin"
    return _loader.lib_dir().parent / "bin"


def run_batched_bench(tool: Path, args: argparse.Namespace, ctx: int,
                      npl: list[int]) -> dict[int, dict[str, Any]]:
    """llama-batched-bench's row per client count: speed_tg (S_TG), t_pp, t_tg, t (seconds)."""
    cmd = [str(tool), "-m", str(args.model), "-c", str(ctx), "-b", "2048", "-ub", "512",
           "-npp", str(args.npp), "-ntg", str(args.ntg), "-npl", ",".join(map(str, npl)),
           "-ngl", str(args.ngl), "-fa", args.fa, "--output-format", "jsonl"]
    cmd += [] if args.kv_split else ["-kvu"]
    if args.threads:
        cmd += ["-t", str(args.threads)]
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.tool_timeout)
    if p.returncode != 0:
        print(p.stderr[-2000:])
        raise RuntimeError(f"llama-batched-bench failed with {p.returncode}")
    rows = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    return {int(r["pl"]): r for r in rows}


def best_batched_bench(tool: Path, args: argparse.Namespace, ctx: int,
                       npl: list[int]) -> dict[int, dict[str, Any]]:
    """run_batched_bench --bb-reps times; per client count the run with the highest S_TG,
    with every run's S_TG under "speed_tg_runs" (between runs of one call it moved from 7.4k
    to 9.2k t/s at 64 streams on an H100, while ours held still: the best is the bar)."""
    runs = [run_batched_bench(tool, args, ctx, npl) for _ in range(max(1, args.bb_reps))]
    best: dict[int, dict[str, Any]] = {}
    for n in npl:
        got = [r[n] for r in runs if n in r]
        if got:
            best[n] = dict(max(got, key=lambda r: float(r["speed_tg"])),
                           speed_tg_runs=[float(r["speed_tg"]) for r in got])
    return best


def server_cmd(which: str, args: argparse.Namespace, ctx: int, n_slots: int, port: int,
               llama_server: Path) -> list[str]:
    if which == "llama-server":
        cmd = [str(llama_server), "-m", str(args.model), "-np", str(n_slots), "-c", str(ctx),
               "-fa", args.fa, "-ngl", str(args.ngl), "-b", "2048", "-ub", "512",
               "--host", "127.0.0.1", "--port", str(port)] + ([] if args.kv_split else ["-kvu"])
        if args.threads:
            cmd += ["-t", str(args.threads)]
        return cmd
    cmd = [sys.executable, "-m", "llama_binding.server", "--model", str(args.model),
           "--n-seq-max", str(n_slots), "--n-ctx", str(ctx), "--flash-attn", args.fa,
           "--n-gpu-layers", str(args.ngl), "--n-batch", "2048", "--n-ubatch", "512",
           "--host", "127.0.0.1", "--port", str(port), "--no-kv-unified" if args.kv_split else "--kv-unified"]
    if args.threads:
        cmd += ["--n-threads", str(args.threads), "--n-threads-batch", str(args.threads)]
    return cmd + shlex.split(args.ours_args)


def load_args(args: argparse.Namespace, clients: int, mode: str) -> argparse.Namespace:
    # the same prompts for both servers at a point, other prompts at every other point
    seed = 1000 * list(MODES).index(mode) + clients
    la = sl.parse_args(["--clients", str(clients), "--seconds", str(args.seconds),
                        "--prompt-tokens", str(args.npp), "--max-tokens", str(args.ntg), "--ignore-eos",
                        "--endpoint", args.endpoint, "--drain-timeout", str(args.drain_timeout),
                        "--seed", str(seed), "--procs", str(args.procs)])
    for k, v in MODES[mode].items():
        setattr(la, k, v)
    return la


_COUNTERS = {"decodes": "llamacpp:n_decode_total", "predicted": "llamacpp:tokens_predicted_total",
             "prompt": "llamacpp:prompt_tokens_total", "busy": "llamacpp:n_busy_slots_per_decode",
             "pipelined": "llama_binding_pipelined_decodes_total"}


def engine_counters(base: str) -> dict[str, float]:
    """Our server's engine counters from /metrics, and the time they were read."""
    text = httpx.get(f"{base}/metrics", timeout=10.0).text
    out = {"t": time.perf_counter()}
    for key, name in _COUNTERS.items():
        m = re.search(rf"^{re.escape(name)}\{{[^}}]*\}} (\S+)$", text, re.M)
        out[key] = float(m.group(1)) if m else 0.0
    for m in re.finditer(r'^llama_binding_engine_seconds_total\{[^}]*phase="(\w+)"\} (\S+)$', text, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


def engine_split(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Where our engine's steps went over a point: decodes, rows per decode, and per decode
    the ms of each phase: prepare, decode, collect, deliver (handing tokens to the event
    loop, the GIL taken back included), idle (waiting for requests with none in flight) and
    the rest (commands, the GIL waits outside those), from the counters read as the clients
    started and ended."""
    n = after["decodes"] - before["decodes"]
    if n <= 0:
        return {}
    wall = after["t"] - before["t"]
    rows = after["busy"] * after["decodes"] - before["busy"] * before["decodes"]
    split = {"decodes": n, "rows_per_decode": rows / n, "step_ms": wall / n * 1e3,
             "pipelined": after["pipelined"] - before["pipelined"]}
    phases = ("prepare", "decode", "collect", "deliver", "idle")
    for phase in phases:
        split[f"{phase}_ms"] = (after.get(phase, 0.0) - before.get(phase, 0.0)) / n * 1e3
    split["rest_ms"] = split["step_ms"] - sum(split[f"{p}_ms"] for p in phases)
    return split


def measure_point(which: str, args: argparse.Namespace, base: str, pid: int, n: int,
                  mode: str) -> dict[str, Any]:
    """One point's load; for ours also where the engine's steps went (its /metrics counters
    read as the clients start and once they are done)."""
    reads: dict[str, dict[str, float]] = {}

    def read(when: str) -> None:
        if which == "ours":
            reads[when] = engine_counters(base)

    s = sl.measure(load_args(args, n, mode), base, pid=pid, quiet=True, around=read)
    sl.report(s, f"{which} {mode}")
    split = engine_split(reads["start"], reads["end"]) if len(reads) == 2 else {}
    if split:
        s["engine"] = split
        print(f"  engine: {split['decodes']:.0f} decodes, {split['rows_per_decode']:.1f} rows each; "
              f"per decode (ms): step {split['step_ms']:.3f} = decode {split['decode_ms']:.3f} + prepare "
              f"{split['prepare_ms']:.3f} + collect {split['collect_ms']:.3f} + deliver "
              f"{split['deliver_ms']:.3f} + idle {split['idle_ms']:.3f} + rest {split['rest_ms']:.3f}; "
              f"{split['pipelined']:.0f} queued before the last step's bookkeeping",
              flush=True)
    return s


def measure_server(which: str, args: argparse.Namespace, ctx: int, n_slots: int, clients: list[int],
                   modes: list[str], llama_server: Path, log_dir: Path) -> dict[str, Any]:
    port = sl.free_port()
    cmd = server_cmd(which, args, ctx, n_slots, port, llama_server)
    log = log_dir / f"{which}.log"
    print(f"$ {' '.join(cmd)}  > {log}", flush=True)
    base = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = sl.launch(cmd, log)
    out: dict[str, Any] = {"cmd": cmd, "log": str(log), "points": {}}
    try:
        sl.wait_health(base, proc, args.load_timeout)
        out["load_s"] = round(time.perf_counter() - t0, 2)
        print(f"  {which} ready in {out['load_s']} s (pid {proc.pid})", flush=True)
        for mode in modes:
            for n in clients:
                s = measure_point(which, args, base, proc.pid, n, mode)
                out["points"][f"{n}/{mode}"] = s
    except Exception as e:  # a server that fails is reported, the other one still runs
        out["error"] = f"{type(e).__name__}: {e}"
        print(f"  {which} FAILED: {out['error']}; last lines of {log}:", flush=True)
        print("    " + "\n    ".join(log.read_text(errors="replace").splitlines()[-15:]))
    finally:
        t_stop = time.perf_counter()
        out["exit_status"] = sl.stop(proc, args.stop_grace)
        out["stop_s"] = round(time.perf_counter() - t_stop, 2)
        print(f"  {which} stopped: exit status {out['exit_status']} after {out['stop_s']} s", flush=True)
    return out


def fmt(x: Optional[float], spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--ngl", type=int, default=99)
    ap.add_argument("--fa", default="on", choices=["auto", "on", "off"])
    ap.add_argument("--clients", default="1,16,64")
    ap.add_argument("--modes", default="greedy,t0.8", help="comma list of: " + ", ".join(MODES))
    ap.add_argument("--seconds", type=float, default=15.0, help="per point (clients x mode)")
    ap.add_argument("--drain-timeout", type=float, default=120.0)
    ap.add_argument("--npp", type=int, default=128)
    ap.add_argument("--ntg", type=int, default=128)
    ap.add_argument("--endpoint", choices=["completions", "chat"], default="completions")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--kv-split", action="store_true",
                    help="a KV cache per slot for all three (no -kvu; ours --no-kv-unified)")
    ap.add_argument("--ctx", type=int, default=0,
                    help="context size (default: slots x (npp + ntg + 64) + 256)")
    ap.add_argument("--procs", type=int, default=1,
                    help="client processes (bench/server_load.py --procs; at most one per client)")
    ap.add_argument("--servers", default="llama-server,ours", help="which servers, in this order")
    ap.add_argument("--ours-args", default="", help="more flags for our server (one string)")
    ap.add_argument("--no-batched-bench", action="store_true")
    ap.add_argument("--bb-reps", type=int, default=3,
                    help="llama-batched-bench runs; the one with the highest S_TG is the bar")
    ap.add_argument("--llama-server", type=Path, default=None, help="default: the package's bin folder")
    ap.add_argument("--batched-bench", type=Path, default=None, help="default: the package's bin folder")
    ap.add_argument("--load-timeout", type=float, default=600.0, help="model load, until /health is 200")
    ap.add_argument("--stop-grace", type=float, default=40.0)
    ap.add_argument("--tool-timeout", type=float, default=600.0)
    ap.add_argument("--log-dir", type=Path, default=None,
                    help="server logs (default: beside --json, or /tmp)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    clients = [int(x) for x in args.clients.split(",")]
    modes = args.modes.split(",")
    for m in modes:
        if m not in MODES:
            ap.error(f"unknown mode {m!r}")
    servers = args.servers.split(",")
    n_slots = max(clients)
    ctx = args.ctx or n_slots * (args.npp + args.ntg + 64) + 256
    tools = bin_dir()
    llama_server = args.llama_server or tools / "llama-server"
    batched = args.batched_bench or tools / "llama-batched-bench"
    if "llama-server" in servers and not llama_server.exists():
        raise SystemExit(f"{llama_server} not built: build with LLAMA_BINDING_TOOLS=ON "
                         "LLAMA_BINDING_SERVER_TOOL=ON (or pass --llama-server)")
    log_dir = args.log_dir or (args.json.parent if args.json else Path(tempfile.mkdtemp(prefix="srvbench-")))
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"model {args.model.name}  npp {args.npp}  ntg {args.ntg}  clients {clients}  modes {modes}  "
          f"ctx {ctx}  slots {n_slots}  ngl {args.ngl}  fa {args.fa}  {args.seconds} s per point  "
          f"KV cache {'per slot' if args.kv_split else 'unified'}", flush=True)

    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    result: dict[str, Any] = {"config": config, "ctx": ctx, "slots": n_slots}
    s_tg: dict[int, float] = {}
    e2e: dict[int, float] = {}  # batched-bench's generated tokens over its prompt + generation time
    if not args.no_batched_bench:
        if batched.exists():
            bb = best_batched_bench(batched, args, ctx, clients)
            s_tg = {n: float(r["speed_tg"]) for n, r in bb.items()}
            e2e = {n: n * args.ntg / float(r["t"]) for n, r in bb.items()}
            result["batched_bench"] = bb
            print("  S_TG (best of " + str(args.bb_reps) + ") "
                  + "  ".join(f"{n}: {v:.1f} (runs {min(bb[n]['speed_tg_runs']):.1f}-"
                              f"{max(bb[n]['speed_tg_runs']):.1f})" for n, v in s_tg.items())
                  + "   with its prompts (pl x ntg / (t_pp + t_tg)) "
                  + "  ".join(f"{n}: {v:.1f}" for n, v in e2e.items()), flush=True)
        else:
            print(f"  ({batched} missing: no S_TG)")
    result["s_tg"] = s_tg
    result["batched_bench_with_prompts"] = e2e
    for which in servers:
        result[which] = measure_server(which, args, ctx, n_slots, clients, modes, llama_server, log_dir)

    def point(which: str, key: str) -> dict[str, Any]:
        return result.get(which, {}).get("points", {}).get(key, {})

    print()
    print(f"{'clients':>7} {'mode':>6} | {'ours t/s':>9} {'llama-srv':>9} {'S_TG':>9} | {'ours/S_TG':>9} "
          f"{'ours/srv':>8} | {'TTFT ours':>9} {'TTFT srv':>9} (ms p50) | errors ours/srv")
    rows = []
    bad = 0
    for mode in modes:
        for n in clients:
            o, ls = point("ours", f"{n}/{mode}"), point("llama-server", f"{n}/{mode}")
            ot, lt, st = o.get("gen_tps"), ls.get("gen_tps"), s_tg.get(n)
            et = e2e.get(n)
            row = {"clients": n, "mode": mode, "ours_tps": ot, "llama_server_tps": lt, "s_tg": st,
                   "ours_over_s_tg": ot / st if ot and st else None,
                   "batched_bench_with_prompts": et,
                   "ours_over_bb_with_prompts": ot / et if ot and et else None,
                   "ours_over_llama_server": ot / lt if ot and lt else None,
                   "ttft_p50_ms_ours": o.get("ttft_p50_ms"),
                   "ttft_p50_ms_llama_server": ls.get("ttft_p50_ms"),
                   "decode_est_ours": n * o["stream_tps_mean"] if o.get("stream_tps_mean") else None,
                   "decode_est_llama_server": (n * ls["stream_tps_mean"] if ls.get("stream_tps_mean")
                                               else None),
                   "errors_ours": (o.get("errors", 0) or 0) + (o.get("no_finish_reason", 0) or 0),
                   "errors_llama_server": (ls.get("errors", 0) or 0) + (ls.get("no_finish_reason", 0) or 0)}
            bad += row["errors_ours"] + row["errors_llama_server"]
            rows.append(row)
            print(f"{n:>7} {mode:>6} | {fmt(ot):>9} {fmt(lt):>9} {fmt(st):>9} | "
                  f"{fmt(row['ours_over_s_tg'], '.3f'):>9} {fmt(row['ours_over_llama_server'], '.3f'):>8} | "
                  f"{fmt(row['ttft_p50_ms_ours']):>9} {fmt(row['ttft_p50_ms_llama_server']):>9}          | "
                  f"{row['errors_ours']}/{row['errors_llama_server']}")
    result["rows"] = rows
    print("beside llama-batched-bench's rate with its prompts (pl x ntg / (t_pp + t_tg)): the same "
          "work per request as the servers do, every prompt at once:")
    for r in rows:
        et = r["batched_bench_with_prompts"]
        print(f"{r['clients']:>7} {r['mode']:>6} | ours {fmt(r['ours_tps'])}  batched-bench {fmt(et)}  "
              f"ours/batched-bench {fmt(r['ours_over_bb_with_prompts'], '.3f')}")
    print("decode estimate (clients x mean per-stream rate, prompt phases left out as in S_TG):")
    for r in rows:
        do, dl, st = r["decode_est_ours"], r["decode_est_llama_server"], r["s_tg"]
        print(f"{r['clients']:>7} {r['mode']:>6} | ours {fmt(do)}  llama-server {fmt(dl)}  S_TG {fmt(st)}  "
              f"ours/S_TG {fmt(do / st if do and st else None, '.3f')}  "
              f"ours/llama-server {fmt(do / dl if do and dl else None, '.3f')}")
    for which in servers:
        r = result[which]
        print(f"{which}: load {r.get('load_s')} s, exit status {r.get('exit_status')}"
              + (f", ERROR {r['error']}" if "error" in r else ""))
        if "error" in r:
            bad += 1
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
