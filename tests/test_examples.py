"""The low-level examples run end to end on a real tiny model (stories260K)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "low_level"
GREEDY_CONTINUATION = "Once upon a time, there was a little girl named Lily."


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)


def test_simple(stories260k: Path) -> None:
    proc = _run("simple.py", str(stories260k), "Once upon a time", "-n", "16")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert GREEDY_CONTINUATION in proc.stdout, proc.stdout


def test_custom_sampler(stories260k: Path) -> None:
    proc = _run("custom_sampler.py", str(stories260k), "Once upon a time", "-n", "16", "--ban", ",")
    assert proc.returncode == 0, proc.stderr[-4000:]
    text, _, summary = proc.stdout.rstrip("\n").rpartition("\n")
    # the Python sampler ran at every step and its ban held: greedy would have written ", there"
    assert "sampler 'python-ban' apply() called 16 times for 16 tokens" in summary, proc.stdout
    assert "sampled: never" in summary
    assert text.startswith("Once upon a time") and "," not in text, text
    assert GREEDY_CONTINUATION not in text


def test_chat_example(smollm2: Path) -> None:
    """The README's first command (with the model given by path)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "chat.py"), "--model", str(smollm2),
                           "What is the capital of France?", "-n", "24", "--temperature", "0"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Paris" in proc.stdout, proc.stdout
