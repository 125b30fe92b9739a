"""Caches on object stores: ``s3://``, ``gs://`` and ``file://`` URLs, through obstore.

obstore (Rust's ``object_store``) speaks S3, GCS and the local file system with one API and
reads the usual environment for where and who: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ALLOW_HTTP`` (an endpoint on plain http, such
as a MinIO or moto server), ``GOOGLE_SERVICE_ACCOUNT``, … Every object is written whole by one
put, so two writers never read-modify-write the same object. Failures become one-line
:class:`ProteusError`s that say which of endpoint, credentials, bucket or key is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from proteus.common.runtime.errors import ProteusError

SCHEMES = ("s3://", "gs://", "file://")


def is_url(location: object) -> bool:
    """True for a cache location on an object store (or a ``file://`` URL)."""
    return isinstance(location, str) and location.startswith(SCHEMES)


class ObjectStore:
    """The objects under one URL prefix. Keys are relative to it, "/"-separated."""

    def __init__(self, url: str, option: str = "--cache"):
        from obstore.store import from_url

        if not is_url(url):
            raise ProteusError(f"{option} {url}: not an s3://, gs:// or file:// URL")
        self.url = url.rstrip("/")
        self.option = option
        # Retries are object_store's defaults except for an unreachable endpoint: a typo in
        # AWS_ENDPOINT_URL should fail in seconds, not after minutes of back-off.
        kwargs: dict = {
            "retry_config": {"max_retries": 3, "retry_timeout": _seconds(30)},
            "client_options": {"connect_timeout": "5s", "timeout": "300s"},
        }
        if self.url.startswith("file://"):
            kwargs = {"mkdir": True}
        elif os.environ.get("AWS_ALLOW_HTTP", "").lower() in ("1", "true", "yes"):
            kwargs["client_options"]["allow_http"] = True
        try:
            self._store = from_url(self.url, **kwargs)
        except Exception as exc:  # obstore raises several types for a malformed URL
            raise ProteusError(f"{option} {url}: not a usable store URL ({_first(exc)})") from exc

    def __repr__(self) -> str:
        return f"ObjectStore({self.url!r})"

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such object."""
        import obstore

        try:
            return bytes(self._call(obstore.get, key).bytes())
        except FileNotFoundError:
            return None

    def download(self, key: str, dest: Path) -> int:
        """Stream the object into ``dest`` (a temporary name the caller renames); its size."""
        import obstore

        size = 0
        with open(dest, "wb") as f:
            try:
                for piece in self._call(obstore.get, key).stream(min_chunk_size=8 << 20):
                    f.write(piece)
                    size += len(piece)
            except (FileNotFoundError, ProteusError):
                raise
            except OSError as exc:
                if exc.errno is None:  # obstore's own errors, e.g. a dropped connection
                    raise self._error(exc, key) from exc
                raise ProteusError(  # the local disk: full, or not writable
                    f"{dest.parent}: cannot write {key} of {self.url} ({exc.strerror}); free "
                    "space there, or lower --shard-cache-gb"
                ) from exc
            except Exception as exc:  # the connection dropped mid-transfer
                raise self._error(exc, key) from exc
        return size

    def put(self, key: str, data: bytes | Path) -> None:
        """One whole object; a file is streamed (multipart above obstore's threshold)."""
        import obstore

        self._call(obstore.put, key, Path(data) if isinstance(data, Path) else data)

    def delete(self, keys: list[str]) -> None:
        import obstore

        for start in range(0, len(keys), 1000):  # S3's batch limit
            self._call(obstore.delete, keys[start : start + 1000])

    def list(self, prefix: str = "") -> dict[str, int]:
        """Key → size of every object under ``prefix`` (relative to this store's URL)."""
        return dict(self._list(prefix))

    def _list(self, prefix: str) -> Iterator[tuple[str, int]]:
        import obstore

        stream = self._call(obstore.list, None, prefix=prefix or None)
        try:
            for page in stream:
                for meta in page:
                    yield meta["path"], int(meta["size"])
        except Exception as exc:
            raise self._error(exc, prefix or "/") from exc

    def _call(self, func, key, *args, **kwargs):
        try:
            if key is None:
                return func(self._store, *args, **kwargs)
            return func(self._store, key, *args, **kwargs)
        except FileNotFoundError as exc:
            if "NoSuchBucket" in str(exc):
                raise self._error(exc, key) from exc
            raise
        except Exception as exc:
            raise self._error(exc, key) from exc

    def _error(self, exc: BaseException, key: str | None) -> ProteusError:
        text = str(exc)
        where = f"{self.option} {self.url}"
        if "NoSuchBucket" in text:
            return ProteusError(f"{where}: the bucket does not exist; create it or fix the URL")
        if "169.254.169.254" in text or "credential" in text.lower() or "token" in text.lower():
            return ProteusError(
                f"{where}: no credentials found; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or GOOGLE_SERVICE_ACCOUNT for gs://)"
            )
        if "error sending request" in text or "connect" in text.lower():
            endpoint = os.environ.get("AWS_ENDPOINT_URL", "the default endpoint")
            return ProteusError(
                f"{where}: cannot reach the store at {endpoint}; check AWS_ENDPOINT_URL and "
                "the network"
            )
        if "AccessDenied" in text or "403" in text:
            return ProteusError(f"{where}: access denied to {key}; check the credentials' rights")
        return ProteusError(f"{where}: {key}: {_first(exc)}")


def _first(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def _seconds(n: float):
    from datetime import timedelta

    return timedelta(seconds=n)
