"""Record a real etcd reader run into a cassette (what ``tattler-etcd record`` does)."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any, Literal

import httpx
import trio

from tattler_etcd.data import Entry
from tattler_etcd.errors import ConfigError
from tattler_etcd.pipeline.redaction import Redactor
from tattler_etcd.readers.apiserver import APIServerReader
from tattler_etcd.readers.etcd import EtcdReader
from tattler_etcd.readers.etcd.gateway import EtcdAuth, TLSFiles, ssl_context
from tattler_etcd.replay._format import RecordingInfo, dump_cassette
from tattler_etcd.replay._redact import scrubbers, without_userinfo
from tattler_etcd.replay._transport import Recorder
from tattler_etcd.stats import Counters

__all__ = ["DEFAULT_RESOURCES", "record_apiserver", "record_etcd"]

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
    insecure_skip_tls_verify: bool = False,
    user: str | None = None,
    password: str | None = None,
    redact: Sequence[str] = (),
    keep_unknown_fields: bool = False,
    recorder: Recorder | None = None,
    connect_timeout: float | None = None,
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

    Every value is scrubbed by the safety rules plus ``redact`` (unknown
    fields dropped unless ``keep_unknown_fields``); no credential is written
    (userinfo, tokens, passwords; see ``replay/_redact.py``).

    Raises:
        ConfigError: bad settings (more than one endpoint: the file records URIs).
        tattler_etcd.errors.ReaderError: the reader failed (no file is written).
    """
    if "," in endpoint:
        raise ConfigError("record: give one endpoint (a recording replays the URIs it recorded)")
    recorder = _recorder(recorder, max_events, duration, Redactor(redact, keep_unknown_fields=keep_unknown_fields))
    tls = TLSFiles(cacert, cert, key, insecure_skip_tls_verify)
    ctx = ssl_context(tls)
    transport = recorder.transport(httpx.AsyncHTTPTransport(verify=ctx if ctx is not None else True))
    # The token travels in a header the recorder drops; the password only in EtcdAuth's own client.
    auth = EtcdAuth(user, password or "", verify=ctx or True) if user is not None else None

    async with httpx.AsyncClient(transport=transport, auth=auth) as client:
        reader = EtcdReader(
            endpoint, resources=list(resources), prefix=prefix, page_size=page_size, client=client,
            cacert=cacert, cert=cert, key=key, insecure_skip_tls_verify=insecure_skip_tls_verify,
            connect_timeout=connect_timeout,
        )
        await _run_until_stopped(reader, recorder, duration, task_status)

    info = RecordingInfo(
        source="etcd",
        resources=tuple(resources),
        endpoint=without_userinfo(endpoint.rstrip("/")),
        prefix=prefix,
        page_size=page_size,
    )
    return _write(out, recorder, info)


async def record_apiserver(
    out: str | os.PathLike[str],
    *,
    config: Any,
    resources: Sequence[str] = DEFAULT_RESOURCES,
    page_size: int = 500,
    content_type: Literal["protobuf", "json"] = "protobuf",
    watch_list: bool | None = None,
    max_events: int | None = None,
    duration: float | None = None,
    redact: Sequence[str] = (),
    keep_unknown_fields: bool = False,
    recorder: Recorder | None = None,
    connect_timeout: float | None = None,
    task_status: trio.TaskStatus[Recorder] = trio.TASK_STATUS_IGNORED,
) -> RecordingInfo:
    """:func:`record_etcd` for a live :class:`~tattler_etcd.readers.apiserver.APIServerReader`.

    ``config`` is a :class:`~tattler_etcd.readers.apiserver.ClusterConfig`
    (its credentials are sent, never written). The reader's watch timeouts
    are fixed (no jitter), so a replay asks for the same URIs.

    Raises:
        ConfigError: bad settings.
        tattler_etcd.errors.ReaderError: the reader failed (no file is written).
    """
    if content_type not in ("protobuf", "json"):
        raise ConfigError(f"--content-type: {content_type!r} is neither 'protobuf' nor 'json'")
    recorder = _recorder(recorder, max_events, duration, Redactor(redact, keep_unknown_fields=keep_unknown_fields))
    inner = httpx.AsyncHTTPTransport(
        verify=config.ssl_context if config.ssl_context is not None else True, proxy=config.proxy,
        trust_env=False,
    )
    async with httpx.AsyncClient(base_url=config.server, transport=recorder.transport(inner),
                                 trust_env=False) as client:
        reader = APIServerReader(
            list(resources), config=config, http=client, content_type=content_type, page_size=page_size,
            watch_list=watch_list, rand=_no_jitter, connect_timeout=connect_timeout,
        )
        await _run_until_stopped(reader, recorder, duration, task_status)

    info = RecordingInfo(
        source="apiserver",
        resources=tuple(resources),
        endpoint=without_userinfo(str(config.server).rstrip("/")),
        page_size=page_size,
        options={"content_type": content_type, "watch_list": watch_list},
    )
    return _write(out, recorder, info)


def _no_jitter() -> float:
    """The APIServer reader's randomness for watch timeouts, fixed: the URIs must repeat on replay."""
    return 0.0


def _recorder(recorder: Recorder | None, max_events: int | None, duration: float | None,
              rules: Redactor) -> Recorder:
    if duration is not None and not duration > 0:
        raise ConfigError("--duration: must be more than 0 seconds")
    if max_events is not None and max_events < 1:
        raise ConfigError("--events: must be at least 1")
    if recorder is None:
        scrub_value, scrub_object = scrubbers(rules)
        return Recorder(scrub_value=scrub_value, scrub_object=scrub_object, max_events=max_events)
    if max_events is not None:
        recorder.max_events = max_events
    return recorder


async def _run_until_stopped(
    reader: Any, recorder: Recorder, duration: float | None, task_status: trio.TaskStatus[Recorder],
) -> None:
    """Run ``reader`` (draining what it sends) until the recorder stops; then cancel it."""
    counters = Counters()
    send, receive = trio.open_memory_channel[list[Entry]](0)

    async def drain() -> None:
        async with receive:
            async for chunk in receive:
                counters.add("recorded.entries", len(chunk))

    async def read() -> None:
        await reader.run(send, counters)
        recorder.stop("reader")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        nursery.start_soon(read)
        if duration is not None:
            nursery.start_soon(recorder.stop_after, duration)
        task_status.started(recorder)
        # Lists in flight finish (and are recorded); then only watch reconnects are left.
        await recorder.settled()
        nursery.cancel_scope.cancel()
    logger.info("recording stopped by %s: %d watch events, %d entries read",
                recorder.stopped_by, recorder.watch_events, counters["recorded.entries"])


def _write(out: str | os.PathLike[str], recorder: Recorder, info: RecordingInfo) -> RecordingInfo:
    interactions = recorder.interactions
    info = dataclasses.replace(info, watch_events=recorder.watch_events, stopped_by=recorder.stopped_by,
                               timing=tuple(recorder.timings))
    dump_cassette(out, interactions, info)
    logger.info("wrote %s: %d interactions", os.fspath(out), len(interactions))
    return dataclasses.replace(info, interactions=len(interactions))
