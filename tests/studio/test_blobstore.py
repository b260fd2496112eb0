"""The blob store on an S3-compatible server (moto on loopback) and its bounded local cache; the same
contract as the local folder; a store that cannot be reached is a clear 'unavailable', never a traceback."""

import os
import uuid
from pathlib import Path

import pytest

from lorastudio.config import Settings
from lorastudio.errors import Invalid, NotFound, Unavailable
from lorastudio.studio.blobs import BlobCache, LocalBlobStore, S3BlobStore, make_store, parse_s3_url


def _bucket(s3_env) -> str:
    return s3_env.bucket(f"t-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def s3_store(s3_env, tmp_path):
    settings = Settings(home=tmp_path / "a", blob_url=_bucket(s3_env), s3_endpoint_url=s3_env.endpoint)
    return make_store(settings), settings


def test_make_store_picks_the_backend_from_settings(s3_store, tmp_path):
    store, settings = s3_store
    assert isinstance(store, S3BlobStore) and store.cache.root == settings.cache_dir
    assert isinstance(make_store(Settings(home=tmp_path / "b")), LocalBlobStore)
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b")
    for bad in ("http://bucket/x", "s3:///nobucket", "bucket/prefix"):
        with pytest.raises(Invalid, match="s3://BUCKET/PREFIX"):
            parse_s3_url(bad)


def test_a_file_put_on_one_machine_is_read_on_another(s3_store, s3_env, tmp_path):
    store, settings = s3_store
    source = tmp_path / "lora.safetensors"
    source.write_bytes(os.urandom(300_000))
    blob = store.put_file(source)
    small = store.put_bytes(b"a preview")
    # Another machine: its own home and cache, the same bucket.
    other = make_store(Settings(home=tmp_path / "other", blob_url=settings.blob_url, s3_endpoint_url=s3_env.endpoint))
    assert other.cache.get(blob) is None and other.exists(blob)
    assert other.path(blob).read_bytes() == source.read_bytes()
    assert other.path(small).read_bytes() == b"a preview"
    assert other.cache.get(blob) is not None  # kept: the next job reads the local disk
    key = f"studio/{blob[:2]}/{blob[2:4]}/{blob}"
    assert s3_env.client().head_object(Bucket=settings.blob_url.split("/")[2], Key=key)["ContentLength"] == 300_000
    assert store.put_file(source) == blob  # the same content is stored once
    other.delete(blob)
    assert not store.client.list_objects_v2(Bucket=store.bucket, Prefix=key).get("Contents")
    assert other.cache.get(blob) is None and not other.exists(blob)
    with pytest.raises(NotFound):
        make_store(Settings(home=tmp_path / "third", blob_url=settings.blob_url, s3_endpoint_url=s3_env.endpoint)).path(
            blob
        )


def test_hostile_blob_ids_name_nothing(s3_store):
    store, _ = s3_store
    for bad in ("../../etc/passwd", "", "A" * 64, "0" * 63, "0" * 64 + "/x"):
        with pytest.raises(NotFound):
            store.path(bad)
        assert not store.exists(bad)


def test_the_cache_keeps_the_most_recently_used_within_its_bytes(tmp_path):
    cache = BlobCache(tmp_path / "cache", max_bytes=2500)
    paths = {}
    for i, name in enumerate(("a", "b", "c")):
        blob = name * 64
        paths[name] = cache.add(blob, lambda tmp: Path(tmp).write_bytes(b"x" * 1000))
        os.utime(paths[name], (1000 + i, 1000 + i))  # a, then b, then c (no sleeping for mtimes)
    # Three files of 1000 bytes do not fit in 2500: the oldest went when c came in.
    assert not paths["a"].exists() and paths["b"].exists() and paths["c"].exists()
    assert cache.get("b" * 64) == paths["b"]  # a use: b is now the newest
    cache.add("d" * 64, lambda tmp: Path(tmp).write_bytes(b"x" * 1000))
    assert paths["b"].exists() and not paths["c"].exists() and cache.size() == 2000
    huge = cache.add("e" * 64, lambda tmp: Path(tmp).write_bytes(b"x" * 5000))
    assert huge.exists() and cache.size() == 5000  # bigger than the cache: served, first to go next time


def test_a_store_that_cannot_be_reached_says_so(tmp_path, monkeypatch):
    from tests.servers import free_port

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    store = S3BlobStore(
        "s3://nowhere/p", cache=BlobCache(tmp_path, 10**6), endpoint_url=f"http://127.0.0.1:{free_port()}"
    )
    with pytest.raises(Unavailable, match="s3://nowhere"):
        store.check()
    with pytest.raises(Unavailable, match="could not look up a file.*LORASTUDIO_S3_ENDPOINT_URL"):
        store.put_bytes(b"data")


def test_a_missing_bucket_is_named_at_check(s3_env, tmp_path):
    store = make_store(Settings(home=tmp_path, blob_url="s3://no-such-bucket-here/x", s3_endpoint_url=s3_env.endpoint))
    with pytest.raises(Unavailable, match="no-such-bucket-here"):
        store.check()
