"""A PEP 517 build backend for the one-module spanhub SDK, written with the standard library only.

Why not setuptools: pip builds a project in an isolated environment and downloads the backend
named in ``requires`` into it. spanhub must install where PyPI cannot be reached, so
``pyproject.toml`` names this file (``backend-path``) and ``requires = []``: ``pip install
sdks/python`` then needs no network. A wheel is a zip of the module plus three metadata files,
which is all this writes (PEP 427, PEP 660 for editable installs, core metadata 2.1).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Dict, Optional

NAME = "spanhub"
SUMMARY = "spanhub's Python SDK: report a script's spans to `spanhub run`."
REQUIRES_PYTHON = ">=3.9"
WHEEL_TAG = "py3-none-any"
PROJECT_DIR = Path(__file__).resolve().parent.parent
MODULE = "spanhub.py"
# What an sdist must hold to build the wheel again.
SDIST_FILES = ("pyproject.toml", "README.md", MODULE, "_backend/spanhub_build.py")
# Zip times cannot be before 1980; SOURCE_DATE_EPOCH makes builds reproducible.
BUILD_TIME = max(int(os.environ.get("SOURCE_DATE_EPOCH", "315532800")), 315532800)


def get_requires_for_build_wheel(config_settings: Optional[dict] = None) -> list:
    return []


get_requires_for_build_sdist = get_requires_for_build_editable = get_requires_for_build_wheel


def build_wheel(wheel_directory: str, config_settings: Optional[dict] = None, metadata_directory: Optional[str] = None) -> str:
    return _write_wheel(wheel_directory, {MODULE: (PROJECT_DIR / MODULE).read_bytes()})


def build_editable(
    wheel_directory: str, config_settings: Optional[dict] = None, metadata_directory: Optional[str] = None
) -> str:
    # A .pth line puts the source directory on sys.path, so edits to spanhub.py take effect at once.
    return _write_wheel(wheel_directory, {f"_{NAME}_editable.pth": f"{PROJECT_DIR}\n".encode()})


def build_sdist(sdist_directory: str, config_settings: Optional[dict] = None) -> str:
    base = f"{NAME}-{_version()}"
    path = Path(sdist_directory) / f"{base}.tar.gz"
    files = {name: (PROJECT_DIR / name).read_bytes() for name in SDIST_FILES}
    files["PKG-INFO"] = _metadata().encode()
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as archive:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(f"{base}/{name}")
            info.size = len(data)
            info.mtime = BUILD_TIME
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return path.name


def _write_wheel(wheel_directory: str, files: Dict[str, bytes]) -> str:
    dist_info = f"{NAME}-{_version()}.dist-info"
    files = {
        **files,
        f"{dist_info}/METADATA": _metadata().encode(),
        f"{dist_info}/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: spanhub_build\nRoot-Is-Purelib: true\nTag: {WHEEL_TAG}\n"
        ).encode(),
    }
    record = "".join(f"{name},sha256={_digest(data)},{len(data)}\n" for name, data in files.items())
    files[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    wheel_name = f"{NAME}-{_version()}-{WHEEL_TAG}.whl"
    stamp = time.gmtime(BUILD_TIME)[:6]
    with zipfile.ZipFile(Path(wheel_directory) / wheel_name, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, stamp)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return wheel_name


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _version() -> str:
    """The module's own ``__version__``: one place to change it."""
    match = re.search(r'^__version__ = "([^"]+)"', (PROJECT_DIR / MODULE).read_text("utf-8"), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{MODULE} has no __version__ line")
    return match.group(1)


def _metadata() -> str:
    readme = (PROJECT_DIR / "README.md").read_text("utf-8")
    return (
        "Metadata-Version: 2.1\n"
        f"Name: {NAME}\n"
        f"Version: {_version()}\n"
        f"Summary: {SUMMARY}\n"
        f"Requires-Python: {REQUIRES_PYTHON}\n"
        "Description-Content-Type: text/markdown\n"
        f"\n{readme}"
    )
