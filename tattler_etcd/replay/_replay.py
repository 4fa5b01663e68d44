"""Play a recording back through the real reader, deterministically.

vcrpy answers every request from the cassette (``record_mode="none"``:
nothing new may be asked, and nothing is played twice), matched on method,
URI *and* body, because every etcd call is a POST to the same path. The reader
is the real one, built with the settings the recording names, in its replay
mode: the end of a recorded watch body is the end of that watch, and the
order it emits entries in does not depend on how trio schedules its tasks.

Determinism also needs time: batch windows must not depend on how fast this
machine replays. :func:`run_replay` runs trio on a virtual clock that jumps to
the next deadline whenever every task is waiting (``MockClock(autojump_threshold=0)``),
so a window closes at the same point of the input on every run.

And the input must arrive when it arrived in the recorded run, or every
window would hold the whole recording. So the replay is *paced*: each
response is handed over at its recorded offset from the start of the replay
(never before its request is sent), and a watch body line by line, each line
at its recorded offset, the body ending at its recorded end. Offsets are made
strictly increasing across every response and line of the file (a tiebreak of
a microsecond per rank, in (offset, interaction, line) order), so no two
things happen at the same virtual instant and the order in which the reader
sees them never depends on how trio schedules its tasks. Which interaction a
response is, is vcrpy's own answer: the one it just marked as played.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import trio
import trio.testing

from tattler_etcd.errors import RecordingError
from tattler_etcd.readers import Reader
from tattler_etcd.readers._reflector import Backoff
from tattler_etcd.readers.apiserver import APIServerReader
from tattler_etcd.readers.etcd import EtcdReader
from tattler_etcd.replay._format import RecordingInfo, Timing, read_recording

__all__ = [
    "BUNDLED_RECORDING",
    "ReaderFactory",
    "bundled_recording",
    "check_resources",
    "playback",
    "readers_for",
    "replay_into",
    "run_replay",
]

logger = logging.getLogger("tattler_etcd.replay")

T = TypeVar("T")

#: The file name of the recording shipped with the package.
BUNDLED_RECORDING = "cluster.yaml"

#: Builds the readers that replay a recording: ``(info, client) -> readers``.
ReaderFactory = Callable[[RecordingInfo, httpx.AsyncClient], Sequence[Reader]]


def bundled_recording() -> Path:
    """The path of the recording shipped with tattler-etcd (a real etcd run of the four default kinds).

    Looked up as package data (``tattler_etcd/fixtures/``), which an
    installed package and a source checkout both have.

    Raises:
        RecordingError: the file is missing (a broken install).
    """
    path = Path(__file__).resolve().parent.parent / "fixtures" / BUNDLED_RECORDING
    if not path.is_file():
        raise RecordingError(f"{path}: the bundled recording is missing (reinstall tattler-etcd)")
    return path


def check_resources(info: RecordingInfo, requested: Iterable[str] | None, path: str) -> tuple[str, ...]:
    """The resources to replay: ``requested`` when they are the recorded ones (in any order), else an error.

    ``None`` means "whatever was recorded". A subset is refused too: a
    replay reproduces the recorded run (to see fewer kinds, filter with a
    preprocessor), and readers are free to ask for their resources together.

    Raises:
        RecordingError: the recording was made for other resources (named).
    """
    if requested is None:
        return info.resources
    wanted = tuple(requested)
    if set(wanted) != set(info.resources):
        raise RecordingError(
            f"{path}: recorded for resources {','.join(info.resources)}; "
            f"asked to replay {','.join(wanted)} (replay with --resources {','.join(info.resources)})"
        )
    return wanted


def readers_for(info: RecordingInfo, client: httpx.AsyncClient, *, once: bool = False) -> list[Reader]:
    """The reader(s) that made the recording, rebuilt in replay mode on ``client``.

    ``once`` stops after the initial list (the watch part of the file is not played).
    """
    if info.source == "etcd":
        return [EtcdReader(
            info.endpoint,
            resources=list(info.resources),
            prefix=info.prefix,
            page_size=info.page_size,
            client=client,
            follow=False,
            once=once,
            backoff_factory=_seeded_backoff,
            **_etcd_options(info.options),
        )]
    if info.source == "apiserver":
        content_type = info.options.get("content_type", "json")
        watch_list = info.options.get("watch_list")
        return [APIServerReader(
            list(info.resources),
            http=client,
            content_type=content_type,
            page_size=info.page_size,
            watch_list=watch_list if isinstance(watch_list, bool) else None,
            follow=False,
            once=once,
            rand=_no_jitter,
        )]
    raise RecordingError(f"replaying {info.source!r} recordings is not supported by this tattler-etcd")


def _seeded_backoff() -> Backoff:
    """The same waits on every replay: each resource's back-off draws from its own Random(0)."""
    return Backoff(rand=random.Random(0).random)


def _no_jitter() -> float:
    return 0.0


#: Reader settings a recording may carry in ``options`` that change the requests.
_ETCD_OPTIONS = ("api_path", "watch_timeout")


def _etcd_options(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: options[k] for k in _ETCD_OPTIONS if options.get(k) is not None}


@contextlib.contextmanager
def playback(path: str | os.PathLike[str]) -> Iterator[RecordingInfo]:
    """Check ``path``, then answer every httpx request in the block from it.

    vcrpy patches httpx's transports for the whole process while the block
    runs: a request that is not in the recording (or asks for one a second
    time) raises ``vcr.errors.CannotOverwriteExistingCassetteException``
    instead of touching the network.
    """
    import vcr  # here, not at the top: vcrpy imports aiohttp (~250 ms), needed only while playing

    info = read_recording(path)
    player = vcr.VCR(
        record_mode="none",
        match_on=("method", "uri", "body"),
        decode_compressed_response=False,
    )
    with player.use_cassette(os.fspath(path)):
        yield info


@contextlib.contextmanager
def _playback_with_cassette(path: str) -> Iterator[tuple[RecordingInfo, Any]]:
    import vcr  # (see playback)

    info = read_recording(path)
    player = vcr.VCR(record_mode="none", match_on=("method", "uri", "body"), decode_compressed_response=False)
    with player.use_cassette(path) as cassette:
        yield info, cassette


async def replay_into(
    runner: Any,
    path: str | os.PathLike[str],
    *,
    resources: Iterable[str] | None = None,
    make_readers: ReaderFactory | None = None,
    once: bool = False,
) -> RecordingInfo:
    """Add the recording's reader(s) to ``runner`` and run it to the end of the recording.

    ``runner`` is a :class:`tattler_etcd.pipeline.Runner` with its processors
    added; it ends when the replayed readers end (the end of the recording).
    Run this under a virtual clock (:func:`run_replay`, or the
    ``autojump_clock`` fixture) for batch windows that do not depend on speed.
    ``make_readers`` replaces :func:`readers_for` (``once`` is then yours to apply).

    Raises:
        RecordingError: a bad file, or one recorded for other resources.
    """
    name = os.fspath(path)
    with _playback_with_cassette(name) as (info, cassette):
        check_resources(info, resources, name)
        # The base URL serves the APIServer reader (relative URLs); the etcd reader sends absolute ones.
        transport = _Player(httpx.AsyncHTTPTransport(), name, cassette, info)
        async with httpx.AsyncClient(base_url=info.endpoint, transport=transport, trust_env=False) as client:
            readers = make_readers(info, client) if make_readers is not None else readers_for(info, client, once=once)
            for reader in readers:
                runner.add_reader(reader)
            await runner.run()
    return info


#: The tiebreak between consecutive responses or lines (seconds per rank):
#: far below the file's millisecond resolution, so it never reorders anything.
_TIEBREAK = 1e-6


def _schedule(timing: Sequence[Timing]) -> list[tuple[float, tuple[float, ...], float | None]]:
    """Per interaction: (response time, line times, end time), strictly increasing across the file.

    Everything is ranked by (recorded offset, interaction index, line index)
    and shifted by its rank times :data:`_TIEBREAK`, which keeps the recorded
    order and makes every time distinct.
    """
    points: list[tuple[float, int, int]] = []
    for i, t in enumerate(timing):
        points.append((t.at, i, -1))
        points.extend((offset, i, j) for j, (offset, _n) in enumerate(t.lines))
        if t.end is not None:
            points.append((t.end, i, len(t.lines)))
    at: dict[tuple[int, int], float] = {}
    for rank, (offset, i, j) in enumerate(sorted(points)):
        at[(i, j)] = offset + rank * _TIEBREAK
    return [
        (at[(i, -1)], tuple(at[(i, j)] for j in range(len(t.lines))),
         at[(i, len(t.lines))] if t.end is not None else None)
        for i, t in enumerate(timing)
    ]


class _Player(httpx.AsyncBaseTransport):
    """vcrpy's answers, paced on the (virtual) clock as they arrived in the recorded run.

    Also turns vcrpy's "not in the cassette" into a RecordingError naming the
    file and the request, where it happens, so the reader (and the runner's
    log) carry our one-line error rather than vcrpy's page of advice.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, name: str, cassette: Any, info: RecordingInfo) -> None:
        self.inner = inner
        self.name = name
        self.cassette = cassette
        self.info = info
        self.schedule = _schedule(info.timing)
        self.t0: float | None = None
        self.attributed: set[int] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        from vcr.errors import CannotOverwriteExistingCassetteException  # (see playback)

        if self.t0 is None:
            self.t0 = trio.current_time()  # the first request starts the replay's clock, as it did the recording's
        try:
            response = await self.inner.handle_async_request(request)
        except CannotOverwriteExistingCassetteException as exc:
            raise RecordingError(
                f"{self.name}: the replay asked for {request.method} {request.url}, which the recording does "
                "not hold (or held once and already played): recorded with other settings or by another version?"
            ) from exc
        # vcrpy marks the interaction it plays and returns with no checkpoint in
        # between, so the one played but not yet claimed is this response's.
        played = [i for i, n in self.cassette.play_counts.items() if n and i not in self.attributed]
        if len(played) != 1:
            raise RecordingError(f"{self.name}: cannot tell which recorded interaction answered "
                                 f"{request.method} {request.url}")
        index = played[0]
        self.attributed.add(index)
        at, lines, end = self.schedule[index]
        t0 = self.t0
        if end is None:
            await trio.sleep_until(t0 + at)
            return response
        body = await response.aread()
        await trio.sleep_until(t0 + at)
        sizes = [n for _, n in self.info.timing[index].lines]
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() != "content-length"]
        return httpx.Response(
            response.status_code, headers=headers,
            stream=_PacedBody(body, sizes, [t0 + t for t in lines], t0 + end),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


class _PacedBody(httpx.AsyncByteStream):
    """A recorded streamed body handed over line by line, each at its (virtual) time, then its end."""

    def __init__(self, body: bytes, sizes: Sequence[int], times: Sequence[float], end: float) -> None:
        self.body = body
        self.sizes = sizes
        self.times = times
        self.end: float | None = end
        self.index = 0
        self.pos = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        # An explicit iterator, not an async generator: nothing left suspended for the GC.
        return self

    async def __anext__(self) -> bytes:
        if self.index < len(self.sizes):
            await trio.sleep_until(self.times[self.index])
            n = self.sizes[self.index]
            unit = self.body[self.pos:self.pos + n]
            self.index += 1
            self.pos += n
            return unit
        if self.end is not None:
            end, self.end = self.end, None
            await trio.sleep_until(end)
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.index = len(self.sizes)
        self.end = None


def run_replay(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``trio.run(fn, *args)`` on a virtual clock, so batch windows are virtual time.

    The clock jumps to the next deadline as soon as every task waits: a
    5-second window costs no wall time and closes at the same point of the
    input on every run.
    """
    return trio.run(fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))
