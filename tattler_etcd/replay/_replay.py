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
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import trio
import trio.testing

from tattler_etcd.errors import RecordingError
from tattler_etcd.readers import Reader
from tattler_etcd.replay._format import RecordingInfo, read_recording

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
        from tattler_etcd.readers.etcd import EtcdReader

        return [EtcdReader(
            info.endpoint,
            resources=list(info.resources),
            prefix=info.prefix,
            page_size=info.page_size,
            client=client,
            end_at_stream_end=True,
            once=once,
            seed=0,
            **_etcd_options(info.options),
        )]
    if info.source == "apiserver":
        from tattler_etcd.readers.apiserver import APIServerReader

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
    import vcr

    info = read_recording(path)
    player = vcr.VCR(
        record_mode="none",
        match_on=("method", "uri", "body"),
        decode_compressed_response=False,
    )
    with player.use_cassette(os.fspath(path)):
        yield info


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
    with playback(name) as info:
        check_resources(info, resources, name)
        # The base URL serves the APIServer reader (relative URLs); the etcd reader sends absolute ones.
        transport = _Unrecorded(httpx.AsyncHTTPTransport(), name)
        async with httpx.AsyncClient(base_url=info.endpoint, transport=transport, trust_env=False) as client:
            readers = make_readers(info, client) if make_readers is not None else readers_for(info, client, once=once)
            for reader in readers:
                runner.add_reader(reader)
            await runner.run()
    return info


class _Unrecorded(httpx.AsyncBaseTransport):
    """Turns vcrpy's "not in the cassette" into a RecordingError naming the file and the request.

    Translated where it happens, so the reader (and the runner's log) carry
    our one-line error rather than vcrpy's page of advice.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, name: str) -> None:
        self.inner = inner
        self.name = name

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        from vcr.errors import CannotOverwriteExistingCassetteException

        try:
            return await self.inner.handle_async_request(request)
        except CannotOverwriteExistingCassetteException as exc:
            raise RecordingError(
                f"{self.name}: the replay asked for {request.method} {request.url}, which the recording does "
                "not hold (or held once and already played): recorded with other settings or by another version?"
            ) from exc

    async def aclose(self) -> None:
        await self.inner.aclose()


def run_replay(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``trio.run(fn, *args)`` on a virtual clock, so batch windows are virtual time.

    The clock jumps to the next deadline as soon as every task waits: a
    5-second window costs no wall time and closes at the same point of the
    input on every run.
    """
    return trio.run(fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))
