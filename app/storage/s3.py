"""Artifacts in S3-compatible object storage, read through a local cache.

A PUT makes an object visible whole or not at all (a large file goes up in parts, visible
when the upload completes), so writes are atomic. Reads download into the machine's
content-addressed cache (``ArtifactCache``) and check the recorded sha256 on the way in and
on every later read of the cached file. Credentials come from settings or boto3's usual
chain; they are never logged or put in a message.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, NoReturn, Self
from urllib.parse import urlsplit

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from app.core.errors import Unavailable
from app.storage.base import (
    CHUNK_BYTES,
    ArtifactStore,
    StoredArtifact,
    StoreOptions,
    check_digest,
    check_key,
    sha256_file,
)
from app.storage.cache import ArtifactCache

_MISSING = {"404", "NoSuchKey", "NotFound"}
_TRANSFER = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20)
_CLIENT_CONFIG = Config(
    retries={"max_attempts": 4, "mode": "standard"},
    connect_timeout=5,
    read_timeout=60,
    request_checksum_calculation="when_required",
    response_checksum_validation="when_required",
)


@dataclass(frozen=True)
class _Refusal:
    """What the service answered a failed call with, read once from boto3's response (an
    open dict): the code decides what the failure means, ``fields`` is shown as it came."""

    code: str
    message: str
    fields: Mapping[str, object]

    @classmethod
    def of(cls, error: ClientError) -> _Refusal:
        fields = error.response.get("Error", {})
        return cls(str(fields.get("Code", "")), str(fields.get("Message", "")), fields)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` as (bucket, prefix without slashes); ValueError names the
    problem. Credentials in the URL are refused: they belong in secret settings."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.hostname:
        raise ValueError(f"expected s3://BUCKET[/PREFIX], got {url!r}")
    if parts.username or parts.password or "@" in parts.netloc:
        raise ValueError(
            "credentials do not belong in the URL: set "
            "KILN_S3_ACCESS_KEY_ID and KILN_S3_SECRET_ACCESS_KEY"
        )
    if parts.query or parts.fragment:
        raise ValueError("expected s3://BUCKET[/PREFIX] without ? or #")
    prefix = parts.path.strip("/")
    if prefix:
        check_key(prefix)
    return parts.netloc, prefix


class S3ArtifactStore(ArtifactStore):
    """Objects ``PREFIX/KEY`` in ``bucket``; see the module docstring."""

    schemes: ClassVar[tuple[str, ...]] = ("s3",)

    def __init__(
        self,
        url: str,
        *,
        cache: ArtifactCache,
        endpoint_url: str | None,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
    ) -> None:
        self.url = url
        self.bucket, self.prefix = parse_s3_url(url)
        self.cache = cache
        self.endpoint_url = endpoint_url or None  # None: boto3's default for the region
        self.region = region
        self._access_key_id = access_key_id or None  # None: boto3's usual chain
        self._secret_access_key = secret_access_key or None
        self._clients: dict[int, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, options: StoreOptions) -> Self:
        """``s3://BUCKET[/PREFIX]``, read through a cache under the data directory."""
        return cls(
            url,
            cache=ArtifactCache(options.data_dir / "cache" / "artifacts", options.cache_bytes),
            endpoint_url=options.s3_endpoint_url,
            region=options.s3_region,
            access_key_id=options.s3_access_key_id,
            secret_access_key=options.s3_secret_access_key,
        )

    def __repr__(self) -> str:  # never the credentials
        return f"S3ArtifactStore({self.url!r})"

    def _client(self) -> Any:
        """One client per process (a forked worker must not share its parent's sockets)."""
        pid = os.getpid()
        with self._lock:
            client = self._clients.get(pid)
            if client is None:
                client = boto3.session.Session().client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    region_name=self.region,
                    aws_access_key_id=self._access_key_id,
                    aws_secret_access_key=self._secret_access_key,
                    config=_CLIENT_CONFIG,
                )
                self._clients = {pid: client}
            return client

    def _object(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, action: str, key: str, error: Exception) -> NoReturn:
        if isinstance(error, ClientError):
            refusal = _Refusal.of(error)
            if refusal.code in _MISSING:
                raise FileNotFoundError(f"artifact {key!r} is missing from {self.url}")
            detail = f"{refusal.code}: {refusal.message}"
        else:
            detail = type(error).__name__
        raise Unavailable(
            f"the artifact store {self.url} failed to {action} {key!r} "
            f"({detail}); nothing was changed, try again"
        ) from error

    def put_file(self, key: str, source: Path) -> StoredArtifact:
        digest, size = sha256_file(source), source.stat().st_size
        try:
            self._client().upload_file(
                str(source),
                self.bucket,
                self._object(key),
                ExtraArgs={"Metadata": {"sha256": digest}},
                Config=_TRANSFER,
            )
        except (BotoCoreError, ClientError, S3UploadFailedError) as error:
            self._fail("store", key, error)
        if size <= self.cache.max_bytes // 4:
            self._cache_copy(key, source, digest)
        return StoredArtifact(key=key, sha256=digest, size_bytes=size)

    def _cache_copy(self, key: str, source: Path, digest: str) -> None:
        def fill(out: BinaryIO) -> str:
            with source.open("rb") as src:
                shutil.copyfileobj(src, out, CHUNK_BYTES)
            return digest

        self.cache.add(key, digest, fill)

    def put_bytes(self, key: str, data: bytes, *, durable: bool = True) -> StoredArtifact:
        digest = hashlib.sha256(data).hexdigest()
        try:
            self._client().put_object(
                Bucket=self.bucket, Key=self._object(key), Body=data, Metadata={"sha256": digest}
            )
        except (BotoCoreError, ClientError) as error:
            self._fail("store", key, error)
        if len(data) <= self.cache.max_bytes // 4:
            self.cache.add_bytes(key, data)
        return StoredArtifact(key=key, sha256=digest, size_bytes=len(data))

    def _download(self, key: str, sha256: str | None) -> Path:
        def fill(out: BinaryIO) -> str:
            digest = hashlib.sha256()
            try:
                body = self._client().get_object(Bucket=self.bucket, Key=self._object(key))["Body"]
                for chunk in body.iter_chunks(CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
            except (BotoCoreError, ClientError) as error:
                self._fail("read", key, error)
            return digest.hexdigest()

        return self.cache.add(key, sha256, fill)

    def _cached(self, key: str, sha256: str | None) -> tuple[Path, bool]:
        """The cached file for ``key`` and whether it was downloaded (so checked) now. A
        cached copy is used only while the bucket still holds that object with that digest
        (one HEAD request): a deleted artifact is gone on every machine, and one replaced in
        the bucket is refused on every machine, not only on those without a copy."""
        if sha256 is not None:
            cached = self.cache.get(sha256)
            if cached is not None:
                check_digest(key, sha256, self._stored_digest(key))
                return cached, False
        return self._download(key, sha256), True

    def _stored_digest(self, key: str) -> str:
        """The sha256 the object's metadata records (written with it); FileNotFoundError
        when the bucket no longer holds it."""
        try:
            head = self._client().head_object(Bucket=self.bucket, Key=self._object(key))
        except (BotoCoreError, ClientError) as error:
            self._fail("look up", key, error)
        return str(head.get("Metadata", {}).get("sha256", ""))

    def local_path(self, key: str, sha256: str | None) -> Path:
        path, fresh = self._cached(key, sha256)
        if not fresh and sha256 is not None and sha256_file(path) != sha256:
            self.cache.discard(sha256)  # damaged on this disk: fetch it again
            path = self._download(key, sha256)
        return path

    def read_bytes(self, key: str, sha256: str | None) -> bytes:
        path, fresh = self._cached(key, sha256)
        data = path.read_bytes()
        if not fresh and sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            self.cache.discard(sha256)  # damaged on this disk: fetch it again
            data = self._download(key, sha256).read_bytes()
        return data  # a download is checked as it is written into the cache

    def exists(self, key: str) -> bool:
        try:
            self._client().head_object(Bucket=self.bucket, Key=self._object(key))
        except ClientError as error:
            if _Refusal.of(error).code in _MISSING:
                return False
            self._fail("look up", key, error)
        except BotoCoreError as error:
            self._fail("look up", key, error)
        return True

    def remove_orphans(self) -> int:
        return self.cache.remove_orphans()

    def delete(self, key: str) -> None:
        try:
            self._client().delete_object(Bucket=self.bucket, Key=self._object(key))
        except (BotoCoreError, ClientError) as error:
            self._fail("delete", key, error)

    def ensure_ready(self) -> None:
        """Create the bucket when it does not exist; Unavailable names what failed."""
        client = self._client()
        try:
            client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as error:
            refusal = _Refusal.of(error)
            if refusal.code not in _MISSING:
                raise Unavailable(
                    f"the artifact store {self.url} refused access to bucket "
                    f"{self.bucket!r}: {refusal.fields}"
                ) from None
        except NoCredentialsError:
            raise Unavailable(
                f"the artifact store {self.url} has no credentials: set "
                "KILN_S3_ACCESS_KEY_ID and KILN_S3_SECRET_ACCESS_KEY (or AWS_* "
                "variables, or give the machine a role)"
            ) from None
        except BotoCoreError as error:
            raise Unavailable(
                f"the artifact store {self.url} cannot be reached ({type(error).__name__}: {error})"
            ) from None
        extra = (
            {}
            if self.region in ("", "us-east-1")
            else {"CreateBucketConfiguration": {"LocationConstraint": self.region}}
        )
        try:
            client.create_bucket(Bucket=self.bucket, **extra)
        except ClientError as error:
            refusal = _Refusal.of(error)
            if refusal.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise Unavailable(
                    f"the artifact store {self.url} could not create bucket "
                    f"{self.bucket!r}: {refusal.fields}"
                ) from None
