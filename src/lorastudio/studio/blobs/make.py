"""make_store: the blob store the settings name. Kept apart from store.py, which s3.py builds on, so that
store.py never imports s3.py (an import cycle)."""

from __future__ import annotations

from lorastudio.config import Settings
from lorastudio.studio.blobs.cache import BlobCache
from lorastudio.studio.blobs.s3 import S3BlobStore
from lorastudio.studio.blobs.store import BlobStore, LocalBlobStore


def make_store(settings: Settings) -> BlobStore:
    """The blob store the settings name: s3://... (with a local cache) or the local folder."""
    if settings.blob_url:
        cache = BlobCache(settings.cache_dir, int(settings.cache_gb * 1024**3))
        return S3BlobStore(settings.blob_url, cache=cache, endpoint_url=settings.s3_endpoint_url)
    return LocalBlobStore(settings.blobs_dir)
