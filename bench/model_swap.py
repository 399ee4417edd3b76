"""Load and eviction timings of the multi-model server (P11).

    python bench/model_swap.py --models ../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf \\
        ../shared/models/stories260K.gguf ../shared/models/all-MiniLM-L6-v2-f16.gguf --max-models 2

Starts ``python -m llama_binding.server`` with a config of the given models (an embedding
model, by its name containing "MiniLM" or "embed", gets embeddings requests) and
``--max-models``, then asks each model in turn, several rounds: each request's latency
beside the model's status before it (``unloaded``: the request waited for a load, and for
an eviction when the pool was full; ``loaded``: warm). Then the server's own load times
(``/v1/models``). Loopback only; the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import server_load as sl


def is_embedding(path: Path) -> bool:
    name = path.name.lower()
    return "minilm" in name or "embed" in name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, nargs="+", required=True)
    ap.add_argument("--max-models", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    aliases = [f"m{i}-{p.stem[:24]}" for i, p in enumerate(args.models)]
    config = {"max_models": args.max_models,
              "models": [{"model": str(p), "model_alias": a, "n_ctx": args.n_ctx,
                          "embedding": is_embedding(p)} for p, a in zip(args.models, aliases)]}
    tmp = Path(tempfile.mkdtemp(prefix="model-swap-"))
    (tmp / "config.json").write_text(json.dumps(config))
    port = sl.free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "llama_binding.server", "--config", str(tmp / "config.json"),
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    proc = sl.launch(cmd, tmp / "server.log")
    rows: list[dict[str, Any]] = []
    try:
        sl.wait_health(base, proc, 120.0)
        with httpx.Client(base_url=base, timeout=300.0, trust_env=False) as c:
            for rnd in range(args.rounds):
                for path, alias in zip(args.models, aliases):
                    before = {m["id"]: m["meta"]["status"] for m in c.get("/v1/models").json()["data"]}
                    t0 = time.perf_counter()
                    if is_embedding(path):
                        r = c.post("/v1/embeddings", json={"model": alias, "input": "hello"})
                    else:
                        r = c.post("/v1/completions",
                                   json={"model": alias, "prompt": "Once", "max_tokens": 1})
                    ms = (time.perf_counter() - t0) * 1000
                    rows.append({"round": rnd, "model": alias, "status_before": before[alias],
                                 "resident_before": sorted(k for k, v in before.items() if v == "loaded"),
                                 "ms": round(ms, 1), "http": r.status_code})
                    print(f"round {rnd}  {alias:<36} {before[alias]:<9} {ms:9.1f} ms  HTTP {r.status_code}",
                          flush=True)
            cards = c.get("/v1/models").json()["data"]
    finally:
        status = sl.stop(proc, 30.0)
    print(f"server exit status {status}")
    for card in cards:
        m = card["meta"]
        print(f"{card['id']:<36} loads {m['loads']}  unloads {m['unloads']}  last load "
              f"{m.get('load_seconds', float('nan')) * 1000:.1f} ms")
    cold = [r["ms"] for r in rows if r["status_before"] != "loaded"]
    warm = [r["ms"] for r in rows if r["status_before"] == "loaded"]
    if cold:
        print(f"requests that loaded a model: {len(cold)}, median {sorted(cold)[len(cold) // 2]:.1f} ms; "
              f"warm: {len(warm)}, median {sorted(warm)[len(warm) // 2] if warm else float('nan'):.1f} ms")
    if args.json:
        args.json.write_text(json.dumps({"config": config, "rows": rows, "models": cards}, indent=1))
    return 0 if all(r["http"] == 200 for r in rows) and status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
