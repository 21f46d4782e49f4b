"""The content store: resumable ingest, verification, atomic commit."""

from __future__ import annotations

import os
import threading

import pytest

from skiff.containerd.content import ContentStore
from skiff.errors import AlreadyExists, FailedPrecondition, NotFound, Unavailable
from skiff.oci.digest import Digest


def test_ingest_resumes_from_offset(store: ContentStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    digest = Digest.from_bytes(data)
    with store.writer("ref-1", total=len(data), expected=digest) as w:
        w.write(data[:1_000_000])
    # a new writer (as after a crash) continues where the bytes stop
    st = store.status("ref-1")
    assert st.offset == 1_000_000 and st.total == len(data) and st.expected == digest
    with store.writer("ref-1", total=len(data), expected=digest) as w:
        assert w.offset == 1_000_000
        w.write(data[1_000_000:])
        assert w.commit(len(data), digest) == digest
    info = store.info(digest)
    assert info.size == len(data)
    assert store.read_at(digest, 5, 10) == data[5:15]
    assert store.read_at(digest, len(data) - 3) == data[-3:]
    assert [i.digest for i in store.walk()] == [digest]
    assert store.statuses() == []
    with pytest.raises(AlreadyExists):
        store.writer("ref-2", expected=digest)


def test_wrong_digest_or_size_commits_nothing(store: ContentStore) -> None:
    data = b"some bytes"
    wrong = Digest.from_bytes(b"other bytes")
    with store.writer("bad", expected=wrong) as w:
        w.write(data)
        with pytest.raises(FailedPrecondition, match="unexpected digest"):
            w.commit(len(data), wrong)
    assert not store.exists(wrong) and not store.exists(Digest.from_bytes(data))
    assert list(store.walk()) == [] and store.statuses() == []
    with store.writer("short") as w:
        w.write(data)
        with pytest.raises(FailedPrecondition, match="unexpected size"):
            w.commit(len(data) + 1, Digest.from_bytes(data))
    assert list(store.walk()) == []


def test_one_writer_per_ref(store: ContentStore) -> None:
    w = store.writer("busy")
    try:
        with pytest.raises(Unavailable, match="locked"):
            store.writer("busy")
    finally:
        w.close()
    store.writer("busy").close()
    store.abort("busy")
    with pytest.raises(NotFound):
        store.status("busy")


def test_sha512_delete_and_missing(store: ContentStore) -> None:
    data = os.urandom(1000)
    d512 = Digest.from_bytes(data, "sha512")
    with store.writer("s512", expected=d512) as w:
        w.write(data)
        w.commit(len(data), d512)
    assert store.read_all(d512) == data
    store.delete(d512)
    with pytest.raises(NotFound):
        store.info(d512)
    with pytest.raises(NotFound):
        store.delete(d512)
    with pytest.raises(NotFound):
        store.read_at(Digest.from_bytes(b"x"), 0)


def test_concurrent_ingests(store: ContentStore) -> None:
    blobs = [os.urandom(200_000) for _ in range(8)]

    def put(b: bytes) -> None:
        store.write_blob(b)

    threads = [threading.Thread(target=put, args=(b,)) for b in blobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(i.digest for i in store.walk()) == sorted(Digest.from_bytes(b) for b in blobs)


def test_committed_blob_is_read_only_and_published_whole(store: ContentStore) -> None:
    data = os.urandom(5000)
    d = store.write_blob(data)
    assert os.stat(store.blob_path(d)).st_mode & 0o222 == 0
    # nothing under blobs/ but whole blobs
    for info in store.walk():
        assert Digest.from_bytes(store.read_all(info.digest)) == info.digest


def test_same_blob_from_many_threads(store: ContentStore) -> None:
    data = os.urandom(2_000_000)
    errors: list[BaseException] = []

    def put() -> None:
        try:
            assert store.write_blob(data) == Digest.from_bytes(data)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=put) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [i.digest for i in store.walk()] == [Digest.from_bytes(data)]


def test_large_ingest_resumes_and_commits_across_writeback(store: ContentStore) -> None:
    """Writeback is started while writing (every 8 MiB); a writer closed
    mid-way and reopened still commits exactly the bytes written."""
    data = os.urandom(21 * 1024 * 1024 + 5)
    digest = Digest.from_bytes(data)
    cut = 13 * 1024 * 1024 + 3
    with store.writer("big", total=len(data), expected=digest) as w:
        for i in range(0, cut, 1 << 20):
            w.write(memoryview(data)[i : min(i + (1 << 20), cut)])
    with store.writer("big", total=len(data), expected=digest) as w:
        assert w.offset == cut
        w.write(data[cut:])
        assert w.commit(len(data), digest) == digest
    with store.open(digest) as f:
        assert f.read() == data


def test_same_ref_hammered_leaves_one_blob_and_no_ingests(store: ContentStore) -> None:
    """Many rounds of writers racing on one ref while the winner commits
    and removes its ingest directory: none loses its files."""
    for _ in range(25):
        data = os.urandom(100_000)
        errors: list[BaseException] = []

        def put(data: bytes = data, errors: list[BaseException] = errors) -> None:
            try:
                store.write_blob(data, ref="same-ref")
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=put) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert store.exists(Digest.from_bytes(data))
    assert store.statuses() == []
    assert os.listdir(os.path.join(store.root, "ingest")) == []


def test_leftover_removal_directories_are_cleaned(store: ContentStore) -> None:
    stale = os.path.join(store.root, "ingest", ".removing-abc-1-2")
    os.makedirs(os.path.join(stale, "sub"))
    ContentStore(store.root)
    assert not os.path.exists(stale)


def test_a_claimed_huge_total_reserves_little(store: ContentStore) -> None:
    with store.writer("liar", total=20 << 30) as w:
        w.write(os.urandom(1 << 20))
        st = os.stat(w.data_path)
    assert st.st_size == 1 << 20
    assert st.st_blocks * 512 <= 40 << 20
