"""Images inside webdataset tar shards: finding them, and reading one by its path.

A sample of a webdataset shard is the set of members sharing a key (the member name up to the
first dot of its base name): ``n01440764_10026.jpg`` and ``n01440764_10026.cls`` (the label,
as text). An image inside a shard has the path ``<shard>.tar/<member>``: that is what the
image table records, so the trainer replays each view straight from the tar, and every reader
of image bytes (probing, rendering, fingerprints) goes through :func:`read_image_bytes` and
:func:`image_byte_size`, which tell a member from a file by the ``.tar`` component.

Shards are plain (uncompressed) tars, as webdataset writes them; a member is read with one
seek into the shard, found through an index of member offsets built once per shard and
process (its headers only: ~1 ms per thousand members).

Shards on an object store (``--data 's3://bucket/imagenet/train-{000000..000146}.tar'``) are
fetched whole into the node's shard cache (``common/storage/shardcache.py``) on first touch: the
image table's paths are then those of a local folder standing for the remote one, and the
manifest records the URL, so a trainer on another node fetches the same shards into its own.
"""

from __future__ import annotations

import functools
import re
import tarfile
from pathlib import Path

from proteus.common.runtime.errors import ProteusError
from proteus.common.storage.objectstore import ObjectStore, is_url
from proteus.common.storage.shardcache import ShardCacheConfig

TAR_SUFFIX = ".tar"
_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_CHOICE = re.compile(r"\{([^{}]*,[^{}]*)\}")


class _RemoteFolder:
    """A folder of tar shards on an object store, and the local folder standing for it."""

    def __init__(self, url: str, option: str, config: ShardCacheConfig):
        self.url, self.config = url, config
        self.store = ObjectStore(url, option)
        self.local = config.folder(url)
        self._listing: dict[str, int] | None = None

    def listing(self) -> dict[str, int]:
        """Shard name -> size of the .tar objects right in this folder."""
        if self._listing is None:
            self._listing = {
                key: size
                for key, size in self.store.list().items()
                if "/" not in key and key.endswith(TAR_SUFFIX)
            }
        return self._listing

    def fetch(self, name: str) -> bool:
        size = self.listing().get(name)
        if size is None:
            return False
        self.config.fetch(self.store, name, size, self.local / name)
        return True


_REMOTE: dict[Path, _RemoteFolder] = {}  # local stand-in folder -> its remote folder


def remote_folder(url: str, option: str = "--data", config: ShardCacheConfig | None = None):
    """The local folder standing for the remote folder ``url`` of tar shards; a shard under
    it is fetched the first time anything reads it."""
    url = url.rstrip("/")
    config = config or ShardCacheConfig.from_env()
    local = config.folder(url)
    if local not in _REMOTE:  # one store client and listing per folder and process
        _REMOTE[local] = _RemoteFolder(url, option, config)
    return local


def _present(shard: Path) -> bool:
    """Whether ``shard`` is a file here, after fetching it if it stands for a remote one."""
    if shard.is_file():
        return True
    remote = _REMOTE.get(shard.parent)
    return remote is not None and remote.fetch(shard.name)


def split_member(path: Path | str) -> tuple[Path, str] | None:
    """(shard file, member name) when a parent component of ``path`` is a .tar file."""
    parts = Path(path).parts
    for i, part in enumerate(parts[:-1]):
        if part.endswith(TAR_SUFFIX):
            shard = Path(*parts[: i + 1])
            if _present(shard):
                return shard, "/".join(parts[i + 1 :])
    return None


def read_image_bytes(path: Path | str) -> bytes:
    """The bytes of an image file, or of an image member of a tar shard."""
    inside = split_member(path)
    if inside is None:
        return Path(path).read_bytes()
    shard, member = inside
    offset, size = _located(shard, member)
    with open(shard, "rb") as f:
        f.seek(offset)
        data = f.read(size)
    if len(data) != size:
        raise OSError(f"{shard}: member {member} is cut short ({len(data)} of {size} bytes)")
    return data


def image_byte_size(path: Path | str) -> int:
    inside = split_member(path)
    if inside is None:
        return Path(path).stat().st_size
    return _located(*inside)[1]


def _located(shard: Path, member: str) -> tuple[int, int]:
    _present(shard)  # evicted from the shard cache since split_member: fetched again
    stat = shard.stat()
    index = member_index(shard.resolve(), stat.st_mtime_ns, stat.st_size)
    if member not in index:
        raise OSError(f"{shard}: no member {member}")
    return index[member]


@functools.lru_cache(maxsize=256)
def member_index(shard: Path, mtime_ns: int, size: int) -> dict[str, tuple[int, int]]:
    """member name -> (offset of its data, size); keyed by mtime and size, so a rewritten
    shard is indexed again."""
    try:
        with tarfile.open(shard, "r:") as tar:
            return {m.name: (m.offset_data, m.size) for m in tar if m.isfile()}
    except tarfile.ReadError as exc:
        raise OSError(f"{shard}: not a plain tar file ({exc})") from exc


def is_shard_spec(data: Path | str) -> bool:
    """A brace pattern, one .tar file, or a folder holding .tar files and nothing else an
    image folder would hold (sub-folders, or files other than tars and webdataset indexes).
    A URL always names shards: an object store holds tars, not image folders."""
    if is_url(data):
        return True
    data = Path(data)
    text = str(data)
    if "{" in text and "}" in text:
        return True
    if data.is_file():
        return data.suffix == TAR_SUFFIX
    if not data.is_dir():
        return False
    entries = [e for e in data.iterdir() if not e.name.startswith(".")]
    tars = [e for e in entries if e.is_file() and e.suffix == TAR_SUFFIX]
    return bool(tars) and not any(e.is_dir() for e in entries)


def split_url(url: str) -> tuple[str, str | None]:
    """(folder URL, pattern or .tar name in it, or None for every .tar of the folder)."""
    head, _, tail = url.rstrip("/").rpartition("/")
    if "{" in tail or tail.endswith(TAR_SUFFIX):
        return head, tail
    return url.rstrip("/"), None


def _remote_shards(url: str, option: str, config: ShardCacheConfig | None) -> list[Path]:
    folder_url, pattern = split_url(url)
    if "{" in folder_url:
        raise ProteusError(f"{option} {url}: braces only in the shard name, not in its folder")
    local = remote_folder(folder_url, option, config)
    listing = _REMOTE[local].listing()
    names = sorted(listing) if pattern is None else expand_braces(pattern)
    missing = [n for n in names if n not in listing]
    if missing:
        raise ProteusError(
            f"{option} {url}: {len(missing)} of the {len(names)} shards named are not in "
            f"{folder_url} (first: {missing[0]})"
        )
    if not names:
        raise ProteusError(f"{option} {url}: no .tar objects there")
    return [local / name for name in names]


def shard_files(
    data: Path | str, option: str, shard_cache: ShardCacheConfig | None = None
) -> list[Path]:
    """The shards ``data`` names, in order; all must exist, in one folder."""
    if is_url(data):
        return _remote_shards(str(data), option, shard_cache)
    data = Path(data)
    text = str(data)
    if "{" in text:
        shards = [Path(p) for p in expand_braces(text)]
        missing = [p for p in shards if not p.is_file()]
        if missing:
            raise ProteusError(
                f"{option} {data}: {len(missing)} of the {len(shards)} shards the pattern "
                f"names do not exist (first: {missing[0]})"
            )
    elif data.is_file():
        shards = [data]
    else:
        shards = sorted(data.glob(f"*{TAR_SUFFIX}"))
    if len({p.parent for p in shards}) > 1:
        raise ProteusError(f"{option} {data}: shards in several folders; keep them in one")
    return sorted(shards)


def expand_braces(pattern: str) -> list[str]:
    """webdataset's brace notation: ``{000..146}`` (zero-padded like its first bound) and
    ``{a,b}``, any number of each."""
    found = [m for m in (_RANGE.search(pattern), _CHOICE.search(pattern)) if m]
    if not found:
        return [pattern]
    match = min(found, key=lambda m: m.start())  # left to right, as a shell expands
    if match.re is _RANGE:
        first, last = match.group(1), match.group(2)
        width = len(first) if first.startswith("0") else 0
        values = [str(n).zfill(width) for n in range(int(first), int(last) + 1)]
    else:
        values = match.group(1).split(",")
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [p for v in values for p in expand_braces(head + v + tail)]


def samples(shard: Path, image_suffixes: frozenset[str]) -> list[tuple[str, int]]:
    """(member name of the image, label) per sample of a shard; label -1 without a .cls."""
    keyed: dict[str, dict[str, str]] = {}
    labels: dict[str, int] = {}
    _present(shard)
    try:
        with tarfile.open(shard, "r:") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                folder, _, base = m.name.rpartition("/")
                stem, dot, ext = base.partition(".")
                key = f"{folder}/{stem}" if folder else stem
                suffix = f".{ext.lower()}" if dot else ""
                if suffix == ".cls":
                    labels[key] = _label(tar, m, shard)
                elif suffix in image_suffixes:
                    keyed.setdefault(key, {})[suffix] = m.name
    except tarfile.ReadError as exc:
        raise ProteusError(f"--data {shard}: not a plain tar file ({exc})") from exc
    return [
        (members[sorted(members)[0]], labels.get(key, -1)) for key, members in sorted(keyed.items())
    ]


def _label(tar: tarfile.TarFile, member: tarfile.TarInfo, shard: Path) -> int:
    handle = tar.extractfile(member)
    text = handle.read().decode("utf-8", "replace").strip() if handle else ""
    try:
        return int(text)
    except ValueError:
        raise ProteusError(
            f"--data {shard}: {member.name} holds {text[:40]!r}, not an integer class label"
        ) from None
