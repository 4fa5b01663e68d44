"""Record a real etcd reader run into a cassette (what ``tattler-etcd record`` does)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import httpx
import trio

from tattler_etcd.data import Entry
from tattler_etcd.errors import ConfigError
from tattler_etcd.replay._format import RecordingInfo, dump_cassette
from tattler_etcd.replay._redact import scrub_served_object, scrub_stored_value
from tattler_etcd.replay._transport import Recorder
from tattler_etcd.stats import Counters

__all__ = ["DEFAULT_RESOURCES", "record_etcd"]

logger = logging.getLogger("tattler_etcd.replay")

DEFAULT_RESOURCES: tuple[str, ...] = ("pods", "nodes", "namespaces", "persistentvolumes")


async def record_etcd(
    out: str | os.PathLike[str],
    *,
    endpoint: str,
    resources: Sequence[str] = DEFAULT_RESOURCES,
    prefix: str = "/registry",
    page_size: int = 500,
    max_events: int | None = None,
    duration: float | None = None,
    cacert: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    recorder: Recorder | None = None,
    task_status: trio.TaskStatus[Recorder] = trio.TASK_STATUS_IGNORED,
) -> RecordingInfo:
    """Run a live :class:`~tattler_etcd.readers.etcd.EtcdReader` through a :class:`Recorder`, write ``out``.

    The reader lists, then watches, exactly as in production; its exchanges
    are recorded (scrubbed) until ``max_events`` watch events went through,
    ``duration`` seconds passed, the recorder is stopped by the caller, or the
    reader ends by itself. Then the reader is cancelled and the cassette
    written (only then: a failed run leaves no file).

    ``task_status.started(recorder)`` hands the recorder to a caller that
    wants to stop it or hold requests (see :meth:`Recorder.hold`).

    Raises:
        ConfigError: bad settings (more than one endpoint: the file records URIs).
        tattler_etcd.errors.ReaderError: the reader failed (no file is written).
    """
    from tattler_etcd.readers.etcd import EtcdReader
    from tattler_etcd.readers.etcd.gateway import TLSFiles, ssl_context

    if "," in endpoint:
        raise ConfigError("record: give one endpoint (a recording replays the URIs it recorded)")
    if duration is not None and not duration > 0:
        raise ConfigError("--duration: must be more than 0 seconds")
    if max_events is not None and max_events < 1:
        raise ConfigError("--events: must be at least 1")
    if recorder is None:
        recorder = Recorder(scrub_value=scrub_stored_value, scrub_object=scrub_served_object, max_events=max_events)
    elif max_events is not None:
        recorder.max_events = max_events
    tls = TLSFiles(cacert, cert, key)
    ctx = ssl_context(tls)
    transport = recorder.transport(httpx.AsyncHTTPTransport(verify=ctx if ctx is not None else True))
    counters = Counters()
    entries = 0

    async with httpx.AsyncClient(transport=transport) as client:
        reader = EtcdReader(
            endpoint, resources=list(resources), prefix=prefix, page_size=page_size, client=client,
            cacert=cacert, cert=cert, key=key,
        )
        send, receive = trio.open_memory_channel[list[Entry]](0)

        async def drain() -> None:
            nonlocal entries
            async with receive:
                async for chunk in receive:
                    entries += len(chunk)

        async def read() -> None:
            await reader.run(send, counters)
            recorder.stop("reader")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            nursery.start_soon(read)
            if duration is not None:
                nursery.start_soon(recorder.stop_after, duration)
            task_status.started(recorder)
            await recorder.stopped.wait()
            nursery.cancel_scope.cancel()

    info = RecordingInfo(
        source="etcd",
        resources=tuple(resources),
        endpoint=endpoint.rstrip("/"),
        prefix=prefix,
        page_size=page_size,
        watch_events=recorder.watch_events,
        stopped_by=recorder.stopped_by,
    )
    interactions = recorder.interactions
    dump_cassette(out, interactions, info)
    logger.info("recorded %d interactions, %d watch events, %d entries read; stopped by %s",
                len(interactions), recorder.watch_events, entries, recorder.stopped_by)
    return RecordingInfo(**{**info.__dict__, "interactions": len(interactions)})
