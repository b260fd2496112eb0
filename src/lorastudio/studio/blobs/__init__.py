from lorastudio.studio.blobs.cache import BlobCache
from lorastudio.studio.blobs.make import make_store
from lorastudio.studio.blobs.s3 import S3BlobStore, create_bucket, parse_s3_url
from lorastudio.studio.blobs.store import BlobStore, LocalBlobStore

__all__ = ["BlobCache", "BlobStore", "LocalBlobStore", "S3BlobStore", "create_bucket", "make_store", "parse_s3_url"]
