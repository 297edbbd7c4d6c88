"""The layers of one pull: downloaded concurrently, unpacked as they stream, published bottom first.

Each layer to download is one job on a small pool (dockerd's three concurrent downloads). A
job reads the blob from the registry once: every piece is hashed and written into a content
store ingest file and, in the same pass, decompressed, hashed again for the diff ID and
unpacked into an unpublished layer directory. A layer's diff directory holds only its own
entries, so unpacking needs nothing of the layers below it. When the stream ends the blob is
verified (size and digest) and only then named in the content store; the unpacked layer is
verified against its diff ID and waits. The calling thread publishes the layers in chain order,
each as soon as it and every layer below it are ready, while later ones keep downloading.

A failure in any job cancels the others at once (their connections are shut down) and the
caller gets the most telling error. Unpublished layers are discarded here; the layers already
published and the blobs already named are listed in ``Fetched`` for the caller to roll back.

Progress follows dockerd 20.10: ``Already exists`` or ``Pulling fs layer`` per layer in order,
``Waiting`` for the jobs beyond the pool, ``Downloading`` (compressed bytes, at most every
1 % or 512 KiB and 100 ms), ``Verifying Checksum``, ``Download complete``, then per layer, in
order, ``Extracting`` and ``Pull complete``. Unpacking has happened by then: the ``Extracting``
line reports it done.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import queue
import tarfile
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol, cast

from berth.content.store import BlobWriter, LocalContentStore
from berth.errors import BerthError, DigestMismatch, Internal, InvalidArgument, Unavailable
from berth.image._streams import decompressed
from berth.image.progress import ProgressSink, progress_bar, short_id
from berth.oci import descriptor as mt
from berth.oci.descriptor import Descriptor
from berth.oci.digest import ChainID, DiffID, Digest, chain_ids
from berth.registry._http import Response
from berth.registry.client import Repository
from berth.snapshot.layers import PreparedLayer

log = logging.getLogger(__name__)

_READ = 1 << 20
_QUEUED = 8  # pieces of _READ bytes between a layer's network side and its unpacking side
_REPORT_EVERY = 512 * 1024
_REPORT_INTERVAL = 0.1  # dockerd's progress rate limit
# what a blob that is not the layer it claims to be makes the decompressor or tar reader raise
_UNDECODABLE = (EOFError, zlib.error, gzip.BadGzipFile, tarfile.TarError)


class LayerTarget(Protocol):
    """What a pull needs of ``berth.snapshot.layers.LayerStore``."""

    def exists(self, chain_id: ChainID) -> bool: ...
    def prepare(self, diff_id: DiffID, tar_stream: BinaryIO) -> PreparedLayer: ...
    def commit(self, prepared: PreparedLayer, parent: ChainID | None
               ) -> tuple[ChainID, bool]: ...
    def discard(self, prepared: PreparedLayer) -> None: ...
    def apply_layer(self, parent: ChainID | None, diff_id: DiffID,
                    tar_stream: BinaryIO) -> ChainID: ...


@dataclass
class Fetched:
    """What a fetch added to the stores, in the order it was added (for a rollback)."""

    blobs: list[Digest] = field(default_factory=list)
    chains: list[ChainID] = field(default_factory=list)


@dataclass(frozen=True)
class _Layer:
    desc: Descriptor
    diff_id: DiffID
    chain_id: ChainID
    parent: ChainID | None


@dataclass
class _Job:
    """One blob to download (and, unless its layer exists already, to unpack)."""

    layer: _Layer
    unpack: bool
    ident: str
    future: Future[PreparedLayer | None] | None = None


class _Cancelled(Exception):
    """Another layer failed: this one stops."""


class LayerFetcher:
    """Runs the layers of one image pull (a fresh one per pull)."""

    def __init__(self, content: LocalContentStore, layers: LayerTarget, repo: Repository,
                 sink: ProgressSink, workers: int) -> None:
        self._content = content
        self._layers = layers
        self._repo = repo
        self._sink = sink
        self._workers = workers
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._responses: set[Response] = set()
        self._first_error: BaseException | None = None

    def fetch(self, layers: Sequence[Descriptor], diff_ids: Sequence[DiffID],
              done: Fetched) -> None:
        """Download, verify, unpack and publish ``layers``; what was added goes into ``done``."""
        if len(diff_ids) != len(layers):
            raise InvalidArgument("invalid manifest, layers length mismatch: "
                                  f"expected {len(diff_ids)}, got {len(layers)}")
        chains = chain_ids(list(diff_ids))
        triples = zip(layers, diff_ids, chains, strict=True)
        plan = [_Layer(desc, diff_id, chain, chains[i - 1] if i else None)
                for i, (desc, diff_id, chain) in enumerate(triples)]
        jobs = self._announce(plan)
        with ThreadPoolExecutor(max_workers=self._workers,
                                thread_name_prefix="berth-pull") as pool:
            for job in jobs.values():
                job.future = pool.submit(self._run, job, done)
            try:
                self._publish(plan, jobs, done)
            except BaseException as err:
                self._stop(err)
                raise self._outcome(jobs, err) from None
            finally:
                pool.shutdown(wait=True)

    # -- planning --------------------------------------------------------------------------

    def _announce(self, plan: Sequence[_Layer]) -> dict[Digest, _Job]:
        """One job per blob to download; dockerd's first line for every layer."""
        jobs: dict[Digest, _Job] = {}
        for layer in plan:
            desc = layer.desc
            ident = short_id(desc.digest)
            if desc.digest in jobs:
                continue  # the same blob twice: one download, unpacked again when published
            if self._content.has(desc.digest):
                status = "Already exists" if self._layers.exists(layer.chain_id) else \
                    "Download complete"
                self._sink.send({"status": status, "progressDetail": {}, "id": ident})
                continue
            if desc.urls and desc.media_type in (mt.DOCKER_FOREIGN_LAYER,
                                                 mt.DOCKER_FOREIGN_LAYER_GZIP):
                raise InvalidArgument(f"foreign layer {desc.digest} is not supported")
            jobs[desc.digest] = _Job(layer, not self._layers.exists(layer.chain_id), ident)
            self._sink.send({"status": "Pulling fs layer", "progressDetail": {}, "id": ident})
        for job in list(jobs.values())[self._workers:]:
            self._sink.send({"status": "Waiting", "progressDetail": {}, "id": job.ident})
        return jobs

    # -- the calling thread: publish bottom first ------------------------------------------

    def _publish(self, plan: Sequence[_Layer], jobs: dict[Digest, _Job], done: Fetched) -> None:
        claimed: set[Digest] = set()
        for layer in plan:
            digest = layer.desc.digest
            job = jobs.get(digest)
            mine = job is not None and digest not in claimed
            prepared = None
            if job is not None and mine:
                claimed.add(digest)
                assert job.future is not None
                prepared = job.future.result()
            if self._layers.exists(layer.chain_id):
                if prepared is not None:
                    self._layers.discard(prepared)  # another pull published it meanwhile
                fresh = mine
            elif prepared is not None:
                chain, new = self._layers.commit(prepared, layer.parent)
                if new:
                    done.chains.append(chain)
                fresh = True
            else:
                # a blob already here (or downloaded above for another position): unpack it
                with self._content.open_blob(digest) as raw:
                    self._layers.apply_layer(layer.parent, layer.diff_id, decompressed(raw))
                done.chains.append(layer.chain_id)
                fresh = True
            if fresh:
                size, ident = layer.desc.size, short_id(digest)
                self._sink.send({"status": "Extracting",
                                 "progressDetail": {"current": size, "total": size},
                                 "progress": progress_bar(size, size), "id": ident})
                self._sink.send({"status": "Pull complete", "progressDetail": {}, "id": ident})

    # -- a job, in a pool thread -----------------------------------------------------------

    def _run(self, job: _Job, done: Fetched) -> PreparedLayer | None:
        try:
            return self._download(job, done)
        except BaseException as err:
            self._stop(err)
            raise

    def _download(self, job: _Job, done: Fetched) -> PreparedLayer | None:
        desc = job.layer.desc
        if self._cancel.is_set():
            raise _Cancelled()
        prepared: PreparedLayer | None = None
        try:
            with self._repo.open_blob(desc.digest) as resp, \
                    self._content.writer(desc.digest.split(":", 1)[0]) as blob:
                with self._lock:
                    self._responses.add(resp)
                try:
                    with _Source(resp, blob, desc, self._cancel, self._reporter(job)) as source:
                        try:
                            prepared = self._unpack(job, source)
                            source.drain()
                        except _Cancelled:
                            raise
                        except (BerthError, OSError, *_UNDECODABLE) as err:
                            if self._cancel.is_set():
                                raise _Cancelled() from err
                            if not source.broken:
                                self._blame_blob(source, blob, desc)
                            if isinstance(err, _UNDECODABLE):
                                raise InvalidArgument(
                                    f"failed to register layer: {err}") from err
                            raise
                    self._commit_blob(blob, desc, done)
                finally:
                    with self._lock:
                        self._responses.discard(resp)
        except BaseException:
            if prepared is not None:
                self._layers.discard(prepared)
            raise
        self._sink.send({"status": "Verifying Checksum", "progressDetail": {}, "id": job.ident})
        self._sink.send({"status": "Download complete", "progressDetail": {}, "id": job.ident})
        return prepared

    def _unpack(self, job: _Job, source: _Source) -> PreparedLayer | None:
        stream = decompressed(cast(BinaryIO, source))
        if job.unpack:
            return self._layers.prepare(job.layer.diff_id, stream)
        # the layer is unpacked already: the blob must still hold what its diff ID says
        hasher = hashlib.sha256()
        while data := stream.read(_READ):
            hasher.update(data)
        if f"sha256:{hasher.hexdigest()}" != job.layer.diff_id:
            raise DigestMismatch(f"layer content does not match its diff ID {job.layer.diff_id}")
        return None

    def _blame_blob(self, source: _Source, blob: BlobWriter, desc: Descriptor) -> None:
        """A blob that does not decode may simply be the wrong bytes: if so, say that."""
        try:
            source.drain()
            blob.verify(desc.digest, desc.size)
        except DigestMismatch as err:
            log.warning("blob %s from %s: %s", desc.digest, self._repo.path, err)
            raise DigestMismatch(
                f"filesystem layer verification failed for digest {desc.digest}") from err
        except (BerthError, OSError, http.client.HTTPException):
            return  # could not read it all: the first error stands

    def _commit_blob(self, blob: BlobWriter, desc: Descriptor, done: Fetched) -> None:
        try:
            info, new = blob.commit(desc.digest, desc.size)
        except DigestMismatch as err:
            log.warning("blob %s from %s: %s", desc.digest, self._repo.path, err)
            raise DigestMismatch(
                f"filesystem layer verification failed for digest {desc.digest}") from err
        if new:
            done.blobs.append(info.digest)

    def _reporter(self, job: _Job) -> Callable[[int], None]:
        total = job.layer.desc.size
        return lambda current: self._sink.send({
            "status": "Downloading", "progressDetail": {"current": current, "total": total},
            "progress": progress_bar(current, total), "id": job.ident})

    # -- failure -----------------------------------------------------------------------------

    def _stop(self, err: BaseException) -> None:
        """The first failure cancels every other job and cuts their connections."""
        with self._lock:
            if self._first_error is None and not isinstance(err, _Cancelled):
                self._first_error = err
            self._cancel.set()
            responses = list(self._responses)
        for resp in responses:
            resp.abort()

    def _outcome(self, jobs: dict[Digest, _Job], err: BaseException) -> BaseException:
        """Wait for every job; the error to report: a wrong digest says most, else the first."""
        errors: list[BaseException] = []
        for job in jobs.values():
            assert job.future is not None
            failure = job.future.exception()
            if failure is None:
                prepared = job.future.result()
                if prepared is not None:
                    self._layers.discard(prepared)
            elif not isinstance(failure, _Cancelled):
                errors.append(failure)
        first = self._first_error or err
        best = next((e for e in errors if isinstance(e, DigestMismatch)), first)
        if isinstance(best, OSError):
            return Internal(f"failed to register layer: {best}")
        return best


class _Source:
    """The registry's response as the unpacker reads it; every byte also goes into the blob.

    A thread of its own reads the response, hashes and writes the blob and hands the pieces
    over a short queue, so the network side and the unpacking side of one layer run at the
    same time (each mostly outside the GIL). It reports progress as dockerd does and stops
    when the pull is cancelled. ``broken`` says that reading from the registry failed (as
    opposed to the bytes being wrong). Use it as a context manager: leaving it stops and joins
    the thread; the blob may be committed only after that.
    """

    def __init__(self, resp: Response, blob: BlobWriter, desc: Descriptor,
                 cancel: threading.Event, report: Callable[[int], None]) -> None:
        self._resp = resp
        self._blob = blob
        self._digest = desc.digest
        self._total = desc.size
        self._cancel = cancel
        self._report = report
        self._every = max(1, min(_REPORT_EVERY, desc.size // 100))
        self._pieces: queue.Queue[bytes | BaseException] = queue.Queue(_QUEUED)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="berth-pull-net",
                                        daemon=True)
        self._piece = b""
        self._pos = 0
        self._ended = False
        self.broken = False

    def __enter__(self) -> _Source:
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._stop.set()
        if exc_type is not None:
            self._resp.abort()  # the thread may sit in a read: the blob is not wanted now
        while self._thread.is_alive():
            try:  # make room for a piece the thread may be waiting to hand over
                self._pieces.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()

    # -- the consumer side (the unpacker's thread) ------------------------------------------

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = _READ
        while self._pos >= len(self._piece):
            if self._ended or not size:
                return b""
            item = self._next()
            if isinstance(item, BaseException):
                self._ended = True
                raise item
            if not item:  # the end of the blob
                self._ended = True
                return b""
            self._piece, self._pos = item, 0
        if self._pos == 0 and size >= len(self._piece):
            data, self._piece = self._piece, b""
            return data
        data = self._piece[self._pos : self._pos + size]
        self._pos += len(data)
        return data

    def _next(self) -> bytes | BaseException:
        while True:
            if self._cancel.is_set():
                raise _Cancelled()
            try:
                return self._pieces.get(timeout=0.1)
            except queue.Empty:
                continue

    def drain(self) -> None:
        while self.read(_READ):
            pass

    # -- the network side (its own thread) -------------------------------------------------

    def _pump(self) -> None:
        done = reported = 0
        reported_at = 0.0
        try:
            while not self._stop.is_set():
                if self._cancel.is_set():
                    raise _Cancelled()
                data = self._receive(done)
                if not data:
                    self._hand(b"")
                    return
                self._blob.write(data)
                done += len(data)
                if done - reported >= self._every:
                    now = time.monotonic()
                    if now - reported_at >= _REPORT_INTERVAL or done >= self._total:
                        reported, reported_at = done, now
                        self._report(done)
                self._hand(data)
        except BaseException as err:
            self._hand(err)  # raised in the reading thread

    def _receive(self, done: int) -> bytes:
        if done > self._total:
            return b""  # more than declared: the blob check says so
        try:
            data = self._resp.read(_READ)
        except (OSError, http.client.HTTPException, ValueError) as err:
            # (ValueError: a TLS connection that ``abort`` shut under the read)
            self.broken = True
            if self._cancel.is_set():
                raise _Cancelled() from err
            raise Unavailable(f"failed to download {self._digest}: {err}") from err
        if not data and done < self._total:
            # http.client returns short reads when the connection drops: say what happened
            self.broken = True
            if self._cancel.is_set():
                raise _Cancelled()
            raise Unavailable(f"failed to download {self._digest}: unexpected EOF")
        return data

    def _hand(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._pieces.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
