"""Prefill and decode speed of ``Llama.create_completion`` beside llama-bench (same build).

    python bench/decode.py MODEL.gguf [--prompt 128] [--gen 128] [--reps 5] [--ngl 0] [--fa auto]

Prints, per mode (greedy; temperature 0.8 / top_p 0.95 / top_k 40):
- prefill tokens/s of create_completion (prompt evaluated from scratch: prefix reuse off)
  beside llama-bench pp<prompt>, and the ratio;
- decode tokens/s beside llama-bench tg<gen> at the prompt's depth (-d), and the ratio;
- the native sampling cost per token on its own line (llama-bench samples nothing);
- the Python overhead per token measured in-process: wall time per token minus llama.cpp's
  own eval time per token (its perf counters) minus the sampling cost.
Runs alternate (ours, llama-bench, ours, ...) and medians are reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from llama_binding import Llama, benchmark
from llama_binding.core import Batch
from llama_binding.core.context import physical_cores
from llama_binding.generation.sampling import build_chain, is_plain_greedy, on_backend

MODES = {
    "greedy": {"temperature": 0.0},
    "sampled": {"temperature": 0.8, "top_p": 0.95, "top_k": 40, "min_p": 0.0},
}


def llama_bench(model: str, args: argparse.Namespace, threads: int) -> tuple[float, float]:
    """llama-bench's pp<prompt> and tg<gen> at the prompt's depth: the medians of its repetitions
    (the first one of a fresh process can pay one-time costs)."""
    if benchmark.llama_bench_path() is None:
        raise SystemExit("llama-bench not built: install with LLAMA_BINDING_TOOLS=ON")

    def median_tps(n_prompt: int, n_gen: int, depth: int = 0) -> float:
        (speed,) = benchmark.llama_bench(model, n_prompt=n_prompt, n_gen=n_gen, depth=depth,
                                         reps=args.bench_reps, threads=threads, n_gpu_layers=args.ngl,
                                         flash_attn=benchmark.FLASH_ATTN[args.fa])
        return speed.median

    return median_tps(args.prompt, 0), median_tps(0, args.gen, args.prompt)


def _prefill_tps(llm: Llama, prompt: list[int], opts: dict[str, object]) -> float:
    """Prompt tokens/s of a call that evaluates ``prompt`` from scratch and samples one token."""
    llm.reset()  # prefix reuse off: time the whole prompt
    t0 = time.perf_counter()
    llm.create_completion(prompt, max_tokens=1, **opts)  # type: ignore[arg-type]
    return len(prompt) / (time.perf_counter() - t0)


def call_options(llm: Llama, prompt: list[int], gen: int, mode: dict[str, float]) -> dict[str, object]:
    """The mode's options, plus a logit bias banning EOS when the model would end before
    ``gen`` tokens (a logit bias is one more sampler: on the GPU it costs time per token)."""
    opts: dict[str, object] = dict(mode, seed=1)
    llm.reset()
    out = llm.create_completion(prompt, max_tokens=gen, **opts)  # type: ignore[arg-type]
    if out["usage"]["completion_tokens"] < gen:
        opts["logit_bias"] = {llm.token_eos(): -1e9}
    return opts


def stream_per_token(llm: Llama, prompt: list[int], max_tokens: int, **opts: object) -> float:
    """Seconds per token of a streamed completion between its first token's chunk and a late
    one, over the tokens the sequence gained between them. A chunk can carry several tokens
    (text held back until its UTF-8 is whole: sampled text of a model with random weights
    often stops inside a character), so the chunks are not counted: at each chunk the
    tokens the synchronous sequence holds are. Every chunk is handed out at the same point of
    a token's cycle (on a GPU its successor's decode already started, on a CPU not yet), so
    the difference is the tokens decoded in between, except for the last text chunk, whose
    token may start no decode: the span ends at the one before it. (Counting chunks rated
    the sampled decode down by the merged chunks' share: 1.6 ms a token on SmolLM2.)"""
    held = llm.engine.sequence.tokens  # appended to in place while the completion runs
    marks: list[tuple[float, int]] = []
    for chunk in llm.create_completion(prompt, max_tokens=max_tokens, stream=True, **opts):  # type: ignore[arg-type]
        if chunk["choices"][0]["finish_reason"] is None:
            marks.append((time.perf_counter(), len(held)))
    if len(marks) < 3 or marks[-2][1] <= marks[0][1]:
        raise RuntimeError(f"the completion gave {len(marks)} text chunks: nothing to time")
    (t0, n0), (t1, n1) = marks[0], marks[-2]
    return (t1 - t0) / (n1 - n0)


def ours(llm: Llama, prompt: list[int], gen: int, opts: dict[str, object], prefill_reps: int = 3,
         ) -> dict[str, float]:
    # prefill as llama-bench measures it: the median of repetitions after a warm-up of the
    # same shape (the warm-up also attaches the GPU-side sampler for these options, timed
    # apart by switch_cost_ms; on CUDA a repeated graph is captured once, on its 2nd run)
    _prefill_tps(llm, prompt, opts)
    warm = statistics.median(_prefill_tps(llm, prompt, opts) for _ in range(prefill_reps))
    # decode: a streamed completion, timed from its first token's chunk to its last one's
    llm.reset()
    ctx = llm.engine.context
    ctx.perf_reset()
    decode_wall = stream_per_token(llm, prompt, gen, **opts)
    perf = ctx.perf()
    eval_per_token = perf["t_eval_ms"] / 1e3 / max(perf["n_eval"], 1)
    # the same prompt right after decoding: what a user's next prompt meets
    after_decode = _prefill_tps(llm, prompt, opts)
    return {
        "prefill_tps": warm,
        "prefill_after_decode_tps": after_decode,
        "decode_tps": 1.0 / decode_wall,
        "wall_us": decode_wall * 1e6,
        "eval_us": eval_per_token * 1e6,
        # llama.cpp skips building a graph that it can reuse: a decode that builds one
        # pays tens of microseconds on the host that llama-bench's tg does not
        "graphs_reused": perf["n_reused"] / max(perf["n_eval"], 1),
    }


def prefill_after_switch(llm: Llama, prompt: list[int], opts: dict[str, object], other: dict[str, object],
                         reps: int = 3) -> float:
    """Prompt tokens/s of a call with ``opts`` right after a call of the same prompt with
    ``other`` options (a server or a chat alternates them): the median of ``reps``."""
    after = []
    for _ in range(reps):
        _prefill_tps(llm, prompt, other)
        after.append(_prefill_tps(llm, prompt, opts))
    return statistics.median(after)


def switch_cost_ms(llm: Llama, prompt: list[int]) -> float:
    """Extra time of a short call whose sampling options differ from the previous call's."""
    a, b = MODES["greedy"], MODES["sampled"]

    def call(mode: dict[str, float]) -> float:
        llm.reset()
        t0 = time.perf_counter()
        llm.create_completion(prompt[:8], max_tokens=1, **mode)  # type: ignore[arg-type]
        return time.perf_counter() - t0

    same = [call(a) for _ in range(6)][1:]
    switched = [call(a if i % 2 else b) for i in range(6)]
    return (statistics.median(switched) - statistics.median(same)) * 1e3


def sampling_cost_us(llm: Llama, opts: dict[str, object]) -> tuple[str, float]:
    """How a call with ``opts`` samples ("host argmax", "GPU-side chain" or "CPU chain")
    and what that costs per token on the host, measured on the logits of one decode read
    back again and again (a GPU-side chain runs inside the decode: counted in eval)."""
    p = llm.engine.sampling(opts)
    chain = build_chain(p, llm.engine.vocab, llm.n_ctx())
    if is_plain_greedy(p, llm.n_vocab()):
        how = "host argmax"
    elif llm.engine.backend_sampling and chain.leading_top_k == 0 and on_backend(p, llm.n_vocab()):
        how = "GPU-side chain"
    else:  # (a chain that begins with a top-k: over the k largest logits, ChainSlot)
        how = "CPU chain"
    llm.reset()
    llm.engine.detach_chain()
    llm.eval([llm.token_bos()])
    ctx = llm.engine.context
    vocab, batch = llm.engine.vocab, Batch(1)
    reps = 200
    t0 = time.perf_counter()
    for _ in range(reps):
        if how == "host argmax":
            ctx.argmax_decode(vocab, batch, 0, 0, decode_next=False)
        else:
            chain.sample(ctx, -1)
    chain.close()
    return how, (time.perf_counter() - t0) / reps * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--ngl", type=int, default=0)
    ap.add_argument("--fa", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--bench-reps", type=int, default=3, help="llama-bench -r (median taken)")
    ap.add_argument("--backend-sampling", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--outputs-per-seq", type=int, default=None,
                    help="n_outputs_max_per_seq (llama.cpp's default: n_batch)")
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads for both (0: llama-bench's default, the physical cores, and our "
                         "Llama's default: the same, but 1 for single-token decodes with every layer "
                         "on a GPU)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    threads = args.threads or physical_cores()
    backend = {"auto": None, "on": True, "off": False}[args.backend_sampling]
    llm = Llama(args.model, n_ctx=args.prompt + args.gen + 16, n_gpu_layers=args.ngl,
                n_threads=args.threads or None, n_threads_batch=args.threads or None,
                flash_attn=benchmark.FLASH_ATTN[args.fa], backend_sampling=backend,
                n_outputs_max_per_seq=args.outputs_per_seq)
    prompt = [llm.token_bos()] + [(i * 7919) % (llm.n_vocab() - 100) + 50 for i in range(args.prompt - 1)]
    llm.create_completion(prompt[:16], max_tokens=4)  # warm-up
    results: dict[str, object] = {"model": args.model, "threads": threads, "ngl": args.ngl, "fa": args.fa,
                                  "prompt": args.prompt, "gen": args.gen, "reps": args.reps}
    bench_pp: list[float] = []
    bench_tg: list[float] = []
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    options = {name: call_options(llm, prompt, args.gen, mode) for name, mode in MODES.items()}
    for _ in range(args.reps):
        for name in MODES:
            runs[name].append(ours(llm, prompt, args.gen, options[name]))
            other = next(options[m] for m in MODES if m != name)
            runs[name][-1]["prefill_after_switch_tps"] = prefill_after_switch(llm, prompt, options[name],
                                                                              other)
        pp, tg = llama_bench(args.model, args, threads)
        bench_pp.append(pp)
        bench_tg.append(tg)
    pp, tg = statistics.median(bench_pp), statistics.median(bench_tg)
    on_gpu = llm.engine.backend_sampling
    ctx = llm.engine.context
    print(f"model {args.model}  threads {threads} "
          f"(ours: {ctx.n_threads} a token, {ctx.n_threads_batch} a batch)  "
          f"ngl {args.ngl}  fa {args.fa}  reps {args.reps}  "
          f"backend sampling {'on' if on_gpu else 'off'}  n_outputs_max_per_seq {args.outputs_per_seq}")
    print(f"llama-bench: pp{args.prompt} {pp:10.1f} t/s   tg{args.gen} @ d{args.prompt} {tg:9.1f} t/s")
    for name in MODES:
        med = {k: statistics.median(r[k] for r in runs[name]) for k in runs[name][0]}
        how, sample_us = sampling_cost_us(llm, options[name])
        cpu_sample_us = 0.0 if how == "GPU-side chain" else sample_us
        overhead = med["wall_us"] - med["eval_us"] - cpu_sample_us
        print(f"[{name}] prefill {med['prefill_tps']:10.1f} t/s  ratio {med['prefill_tps'] / pp:5.3f}x  "
              f"(right after decoding: {med['prefill_after_decode_tps']:.1f} t/s, "
              f"{med['prefill_after_decode_tps'] / pp:5.3f}x)")
        switched = med["prefill_after_switch_tps"]
        print(f"[{name}] prefill right after a call with the other mode's options "
              f"{switched:10.1f} t/s  ratio {switched / pp:5.3f}x")
        banned = " (EOS banned by a logit bias: the model ended early without one)" \
            if "logit_bias" in options[name] else ""
        print(f"[{name}] decode  {med['decode_tps']:10.1f} t/s  ratio {med['decode_tps'] / tg:5.3f}x{banned}")
        where = {"GPU-side chain": "GPU-side chain, inside the decode; on the CPU it would cost",
                 "CPU chain": "the chain on the CPU (a leading top-k: over the k largest logits)",
                 "host argmax": "the host's argmax (our C)"}[how]
        print(f"[{name}] sampling: {where} {sample_us:7.1f} us/token (llama-bench samples nothing)")
        print(f"[{name}] python overhead {overhead:7.1f} us/token "
              f"(wall {med['wall_us']:.1f} - eval {med['eval_us']:.1f} - host sampling {cpu_sample_us:.1f}; "
              f"graphs reused {100 * med['graphs_reused']:.0f}% of the decodes)")
        results[name] = {**med, "sampling_us": sample_us, "sampled_by": how,
                         "backend_sampling": on_gpu, "overhead_us": overhead,
                         "eos_banned": "logit_bias" in options[name],
                         "prefill_ratio": med["prefill_tps"] / pp,
                         "prefill_after_switch_ratio": med["prefill_after_switch_tps"] / pp,
                         "decode_ratio": med["decode_tps"] / tg}
    switch = switch_cost_ms(llm, prompt)
    print(f"changing sampling options between calls costs {switch:.2f} ms once "
          f"({'re-attaching the GPU-side sampler' if on_gpu else 'a new CPU chain'})")
    results["switch_cost_ms"] = switch
    results["llama_bench"] = {"pp": pp, "tg": tg}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    llm.close()


if __name__ == "__main__":
    main()
