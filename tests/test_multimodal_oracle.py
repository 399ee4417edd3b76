"""Our image chat against llama.cpp's own ``llama-mtmd-cli`` on the same tiny models: the
same rendered prompt (llama.cpp's built-in chatml), the same image, greedy: the same text.

The tiny Llama here has untied output weights and a larger weight scale, so that its
greedy text varies and depends on the image (the default tiny model repeats one token).
The tool is built with ``LLAMA_BINDING_TOOLS=ON`` (CI does); without it the test skips.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from _tinymmproj import NGL, TinyProjectorSpec, make_png, write_tiny_mmproj

from llama_binding import Llama
from llama_binding.capi import _loader

#: llama.cpp's built-in "chatml" template (llm_chat_apply_template), as Jinja, with BOS
CHATML = ("{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
MARK = "<MTMD_TEST_RESPONSE_MARKER>"
N_PREDICT = 12


def _tool() -> Path:
    tool = _loader.lib_dir().parent / "bin" / "llama-mtmd-cli"
    if not tool.is_file():
        pytest.skip("llama-mtmd-cli not built: install with LLAMA_BINDING_TOOLS=ON (CI does)")
    return tool


def _cli_text(tool: Path, model: Path, mmproj: Path, image: Path) -> str:
    env = dict(os.environ, MTMD_TEST_RESPONSE_MARKER=MARK)
    proc = subprocess.run(
        [os.fspath(tool), "-m", os.fspath(model), "--mmproj", os.fspath(mmproj), "--image", os.fspath(image),
         "-p", "Describe\n<__media__>", "-n", str(N_PREDICT), "--temp", "0", "--chat-template", "chatml",
         "-t", "1", "-ngl", str(NGL), "-c", "512"],
        capture_output=True, env=env, timeout=300, check=True)
    out = proc.stdout.decode("utf-8", "replace")
    return out.split(MARK, 1)[1].strip("\n")


def test_image_chat_matches_llama_mtmd_cli(tiny_model: Callable[..., Path], model_cache: Path,
                                           tmp_path: Path) -> None:
    tool = _tool()
    model = tiny_model(vocab="llama-spm", scale=1.0, tied_embeddings=False)
    spec = TinyProjectorSpec()
    mmproj = model_cache / f"tiny-mmproj-{spec.key()}.gguf"
    if not mmproj.exists():
        write_tiny_mmproj(mmproj, spec)
    texts = []
    with Llama(str(model), mmproj_path=str(mmproj), n_ctx=512, n_gpu_layers=NGL, n_threads=1,
               chat_template=CHATML) as llm:
        for seed in (1, 2):
            png = make_png(40, 30, seed=seed)
            image = tmp_path / f"{seed}.png"
            image.write_bytes(png)
            url = "data:image/png;base64," + base64.b64encode(png).decode()
            messages = [{"role": "user", "content": [{"type": "text", "text": "Describe"},
                                                      {"type": "image_url", "image_url": {"url": url}}]}]
            out = llm.create_chat_completion(messages, max_tokens=N_PREDICT, temperature=0.0)
            ours = out["choices"][0]["message"]["content"] or ""
            assert ours == _cli_text(tool, model, mmproj, image)
            texts.append(ours)
    assert texts[0] != texts[1]  # the image matters
