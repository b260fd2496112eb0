"""The blob store on S3 or an S3-compatible server (MinIO, Ceph, R2, moto): for a studio whose web server
and workers are on different machines with no shared disk.

Objects are named <prefix>/ab/cd/<sha256>, like the local folder. A blob is immutable once stored (its
name is its content's hash), so a local copy never goes stale: `path()` serves it from a bounded cache
and fetches it only when it is not there.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from urllib.parse import urlparse

from lorastudio.errors import Invalid, NotFound, Unavailable
from lorastudio.studio.blobs.cache import BlobCache
from lorastudio.studio.blobs.store import check_blob_id

CHUNK = 1 << 20


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of s3://bucket/prefix; Invalid for anything else."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise Invalid(f"blob URL {url[:80]!r} is not s3://BUCKET/PREFIX")
    return parsed.netloc, parsed.path.strip("/")


class S3BlobStore:
    """Blobs as objects in one bucket, with a local LRU cache for reading them as files."""

    def __init__(self, url: str, *, cache: BlobCache, endpoint_url: str | None = None, client=None):
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = parse_s3_url(url)
        self.cache = cache
        retries = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=60)
        self.client = client or boto3.client("s3", endpoint_url=endpoint_url, config=retries)

    def _key(self, blob: str) -> str:
        check_blob_id(blob)
        name = f"{blob[:2]}/{blob[2:4]}/{blob}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def _call(self, what: str, fn, *args, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NotFound"):
                raise NotFound("no such file") from exc
            raise Unavailable(
                f"the file store s3://{self.bucket} refused to {what} ({code or exc}); check the bucket and "
                "the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
            ) from exc
        except BotoCoreError as exc:
            raise Unavailable(
                f"the file store s3://{self.bucket} could not {what}: {exc}; check that it is up and "
                "LORASTUDIO_S3_ENDPOINT_URL"
            ) from exc

    def exists(self, blob: str) -> bool:
        """Whether the blob is stored (a local copy counts: blobs never change)."""
        try:
            if self.cache.get(blob) is not None:
                return True
            self._call("look up a file", self.client.head_object, Bucket=self.bucket, Key=self._key(blob))
            return True
        except NotFound:
            return False

    def put_bytes(self, data: bytes) -> str:
        """Store bytes; their id (sha256 hex). Stored bytes are uploaded once."""
        blob = hashlib.sha256(data).hexdigest()
        if not self.exists(blob):
            self._call("store a file", self.client.put_object, Bucket=self.bucket, Key=self._key(blob), Body=data)
        if self.cache.get(blob) is None:
            self.cache.add(blob, lambda tmp: Path(tmp).write_bytes(data))
        return blob

    def put_file(self, path: Path) -> str:
        """Store a file's content, streamed (multipart for big files), and keep a local copy."""
        digest = hashlib.sha256()
        with Path(path).open("rb") as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                digest.update(chunk)
        blob = digest.hexdigest()
        if not self.exists(blob):
            self._call("store a file", self.client.upload_file, str(path), self.bucket, self._key(blob))
        if self.cache.get(blob) is None:
            self.cache.add(blob, lambda tmp: shutil.copyfile(path, tmp))
        return blob

    def path(self, blob: str) -> Path:
        """A local file with the blob's content, fetched into the cache when it is not there."""
        check_blob_id(blob)
        if (hit := self.cache.get(blob)) is not None:
            return hit
        key = self._key(blob)
        return self.cache.add(
            blob, lambda tmp: self._call("read a file", self.client.download_file, self.bucket, key, tmp)
        )

    def delete(self, blob: str) -> None:
        """Remove a blob from the bucket and the cache (callers make sure no row points at it)."""
        self._call("delete a file", self.client.delete_object, Bucket=self.bucket, Key=self._key(blob))
        self.cache.discard(blob)

    def check(self) -> None:
        """Raise Unavailable unless the bucket can be reached (readiness, worker start)."""
        try:
            self._call("open the bucket", self.client.head_bucket, Bucket=self.bucket)
        except NotFound:
            raise Unavailable(
                f"the bucket {self.bucket!r} does not exist in the file store; create it (aws s3 mb "
                f"s3://{self.bucket}) or fix LORASTUDIO_BLOB_URL"
            ) from None


def create_bucket(store: S3BlobStore) -> bool:
    """Create the store's bucket unless it exists (first setup); whether it was created."""
    try:
        store.check()
        return False
    except Unavailable:
        pass
    region = store.client.meta.region_name
    extra = {} if region in (None, "us-east-1") else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    store._call("create the bucket", store.client.create_bucket, Bucket=store.bucket, **extra)
    return True
