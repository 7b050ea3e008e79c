"""Add ``--hash=sha256:...`` lines to every pin of a lock file, so pip can enforce them.

    .venv/bin/python scripts/lock_hashes.py requirements/cpu.lock

For each ``name==version`` it collects the sha256 of every file that could be installed
for it on a CPython 3.11 Linux x86-64 machine (cp311, abi3 and pure-Python wheels for
manylinux/linux x86_64, plus the sdist) from every place pip may take it from:

* PyPI, through the JSON form of the simple API (PEP 691: what pip itself reads);
* PyTorch's CPU wheel index, for local ``+cpu`` versions (``SLM_ROUTER_TORCH_INDEX``),
  when it answers;
* the extra indexes and find-links folders that pip's own configuration names
  (``pip config list`` and ``PIP_*`` variables), e.g. a local wheel folder.

A file served by two places with different bytes gets both hashes; a pin with no hash at
all is an error (exit 1), so a relock cannot silently drop a package out of hash checking.
Header comments of the lock are kept; existing hash lines are replaced.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import html
import json
import os
import re
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

PYPI_SIMPLE = "https://pypi.org/simple"
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)\s*\\?$")
_LINK = re.compile(r"<a\s[^>]*href=\"([^\"]+)\"[^>]*>([^<]+)</a>", re.IGNORECASE)
_SHA256 = re.compile(r"#sha256=([0-9a-f]{64})")
_TIMEOUT_S = 60


@dataclass(frozen=True)
class Pin:
    """One ``name==version`` line of the lock."""

    name: str
    version: str

    @property
    def key(self) -> str:
        return canonicalize_name(self.name)


@dataclass
class Lock:
    """A lock file: its header comments and its pins, in order."""

    header: list[str]
    pins: list[Pin]

    @classmethod
    def read(cls, path: Path) -> Lock:
        header: list[str] = []
        pins: list[Pin] = []
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("--hash"):
                continue
            if line.startswith("#"):
                if not pins:
                    header.append(raw)
                continue
            match = _PIN.match(line)
            if match is None:
                raise SystemExit(f"{path}: not an exact pin: {raw!r}")
            pins.append(Pin(match.group(1), match.group(2)))
        return cls(header, pins)

    def render(self, hashes: dict[Pin, set[str]]) -> str:
        lines = list(self.header)
        for pin in self.pins:
            digests = sorted(hashes[pin])
            lines.append(f"{pin.name}=={pin.version} \\")
            lines += [f"    --hash=sha256:{d} \\" for d in digests[:-1]]
            lines.append(f"    --hash=sha256:{digests[-1]}")
        return "\n".join(lines) + "\n"


def _tag_fits(tag: Tag) -> bool:
    """Whether a wheel tag installs on CPython 3.11, Linux x86-64 (any glibc)."""
    interpreter, abi, platform = tag.interpreter, tag.abi, tag.platform
    if platform != "any" and not (platform.endswith("_x86_64") and platform.startswith(("manylinux", "linux"))):
        return False
    if interpreter == "cp311" and abi in ("cp311", "abi3", "none"):
        return True
    if abi == "abi3" and re.fullmatch(r"cp3(\d+)", interpreter):
        return int(interpreter[3:]) <= 11  # the stable ABI of an older CPython 3
    return abi == "none" and interpreter in ("py3", "py311", "py2.py3")


def installable_here(filename: str, pin: Pin) -> bool:
    """Whether ``filename`` is a distribution of ``pin`` that pip could install on the target."""
    try:
        version = Version(pin.version)
    except InvalidVersion:
        return False
    if filename.endswith(".whl"):
        try:
            name, file_version, _, tags = parse_wheel_filename(filename)
        except (InvalidWheelFilename, InvalidVersion):
            return False
        return name == pin.key and file_version == version and any(_tag_fits(t) for t in tags)
    try:
        name, file_version = parse_sdist_filename(filename)
    except (InvalidSdistFilename, InvalidVersion):
        return False
    return name == pin.key and file_version == version


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url: str, accept: str = "text/html") -> bytes | None:
    request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "slm-router-lock-hashes"})
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            data: bytes = response.read()
            return data
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def links_from_html(page: str, base: str) -> list[tuple[str, str, str | None]]:
    """``(filename, absolute url, sha256 or None)`` of each link of a simple-index page."""
    out = []
    for href, text in _LINK.findall(page):
        href = html.unescape(href)
        digest = _SHA256.search(href)
        url = urljoin(base, href.split("#", 1)[0])
        filename = unquote(urlparse(url).path.rsplit("/", 1)[-1]) or html.unescape(text).strip()
        out.append((filename, url, digest.group(1) if digest else None))
    return out


@dataclass
class Sources:
    """Where pip may take a distribution from, and what each said (for the report)."""

    pypi: str = PYPI_SIMPLE
    torch_index: str | None = TORCH_INDEX
    indexes: list[str] = field(default_factory=list)
    find_links: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def pypi_hashes(self, pin: Pin) -> set[str]:
        data = _fetch(f"{self.pypi}/{pin.key}/", accept="application/vnd.pypi.simple.v1+json")
        if data is None:
            return set()
        files = json.loads(data).get("files", [])
        return {
            f["hashes"]["sha256"]
            for f in files
            if "sha256" in f.get("hashes", {}) and installable_here(f["filename"], pin)
        }

    def index_hashes(self, index: str, pin: Pin) -> set[str]:
        """Hashes from a PEP 503 index (``file://`` folder or HTTP)."""
        base = index.rstrip("/") + f"/{pin.key}/"
        if base.startswith("file://"):
            folder = Path(unquote(urlparse(base).path))
            page_path = folder / "index.html"
            if not page_path.is_file():
                return set()
            page, base = page_path.read_text(), page_path.as_uri()
        else:
            data = _fetch(base)
            if data is None:
                return set()
            page = data.decode("utf-8", "replace")
        found = set()
        for filename, url, digest in links_from_html(page, base):
            if not installable_here(filename, pin):
                continue
            if digest is None and url.startswith("file://"):
                digest = sha256_of(Path(unquote(urlparse(url).path)))
            if digest is not None:
                found.add(digest)
        return found

    def find_links_hashes(self, pin: Pin) -> set[str]:
        return {
            sha256_of(path)
            for folder in self.find_links
            if folder.is_dir()
            for path in folder.iterdir()
            if path.is_file() and installable_here(path.name, pin)
        }

    def hashes(self, pin: Pin) -> set[str]:
        found = self.pypi_hashes(pin)
        for index in self.indexes:
            found |= self.index_hashes(index, pin)
        if self.torch_index is not None and "+cpu" in pin.version:
            found |= self.index_hashes(self.torch_index, pin)
        return found | self.find_links_hashes(pin)


def _split(values: Iterable[str]) -> list[str]:
    return [part for value in values for part in shlex.split(value)]


def pip_locations(python: str) -> tuple[list[str], list[Path]]:
    """Extra indexes and find-links folders from pip's configuration and environment."""
    listing = subprocess.run(
        [python, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    indexes: list[str] = []
    links: list[str] = []
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        value = value.strip().strip("'\"")
        if key.endswith(("index-url", "extra-index-url")):
            indexes.append(value)
        elif key.endswith("find-links"):
            links.append(value)
    indexes += [os.environ[v] for v in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL") if os.environ.get(v)]
    links += [os.environ["PIP_FIND_LINKS"]] if os.environ.get("PIP_FIND_LINKS") else []
    index_urls = [u for u in dict.fromkeys(_split(indexes)) if u.rstrip("/") != PYPI_SIMPLE]
    folders = [Path(unquote(urlparse(u).path)) if u.startswith("file://") else Path(u) for u in _split(links)]
    return index_urls, list(dict.fromkeys(folders))


def _torch_index_reachable(url: str) -> bool:
    try:
        return _fetch(url.rstrip("/") + "/torch/") is not None
    except (OSError, urllib.error.URLError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("lock", type=Path, nargs="?", default=Path("requirements/cpu.lock"))
    parser.add_argument("--python", default=sys.executable, help="whose pip configuration to read")
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args(argv)

    lock = Lock.read(args.lock)
    indexes, find_links = pip_locations(args.python)
    torch_index = os.environ.get("SLM_ROUTER_TORCH_INDEX", TORCH_INDEX)
    sources = Sources(indexes=indexes, find_links=find_links)
    if not _torch_index_reachable(torch_index):
        sources.torch_index = None
        print(f"note: {torch_index} is unreachable; +cpu wheels are hashed from pip's local sources only")
    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
        found = dict(zip(lock.pins, pool.map(sources.hashes, lock.pins), strict=True))
    missing = [f"{pin.name}=={pin.version}" for pin, digests in found.items() if not digests]
    if missing:
        print(f"no installable file found for: {', '.join(missing)}", file=sys.stderr)
        return 1
    args.lock.write_text(lock.render(found))
    total = sum(len(d) for d in found.values())
    print(
        f"{args.lock}: {len(lock.pins)} pins, {total} hashes (local sources: {indexes + [str(f) for f in find_links]})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
