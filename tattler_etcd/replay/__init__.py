"""Record a reader's HTTP exchanges into a cassette, and replay them deterministically.

Recording (:class:`Recorder`): the reader's ``httpx.AsyncClient`` gets a
:class:`RecordingTransport` that forwards to the real server and keeps a
scrubbed copy of each exchange, watch streams included (cut on a line
boundary when the recorder's limit is reached). :func:`dump_cassette` writes
them as a vcrpy cassette carrying a :class:`RecordingInfo` (format version,
source, endpoint, resources, and the timing of every response and watch
line) under ``metadata.tattler_etcd``.

Replay (:func:`replay_into`, :func:`run_replay`): vcrpy answers the real
reader from the cassette, no new request allowed, paced as the recorded run
was (each response and watch line at its recorded offset), and trio runs on a
virtual clock, so the same file gives the same batches, split where the
recorded run's timing splits them, byte for byte, every time.
"""

from __future__ import annotations

from tattler_etcd.replay._format import (
    FORMAT_VERSION as FORMAT_VERSION,
)
from tattler_etcd.replay._format import (
    METADATA_KEY as METADATA_KEY,
)
from tattler_etcd.replay._format import (
    RecordingInfo as RecordingInfo,
)
from tattler_etcd.replay._format import (
    Timing as Timing,
)
from tattler_etcd.replay._format import (
    dump_cassette as dump_cassette,
)
from tattler_etcd.replay._format import (
    read_recording as read_recording,
)
from tattler_etcd.replay._record import (
    record_apiserver as record_apiserver,
)
from tattler_etcd.replay._record import (
    record_etcd as record_etcd,
)
from tattler_etcd.replay._redact import (
    WITHHELD as WITHHELD,
)
from tattler_etcd.replay._redact import (
    scrub_served_object as scrub_served_object,
)
from tattler_etcd.replay._redact import (
    scrub_stored_value as scrub_stored_value,
)
from tattler_etcd.replay._replay import (
    BUNDLED_RECORDING as BUNDLED_RECORDING,
)
from tattler_etcd.replay._replay import (
    ReaderFactory as ReaderFactory,
)
from tattler_etcd.replay._replay import (
    bundled_recording as bundled_recording,
)
from tattler_etcd.replay._replay import (
    check_resources as check_resources,
)
from tattler_etcd.replay._replay import (
    playback as playback,
)
from tattler_etcd.replay._replay import (
    readers_for as readers_for,
)
from tattler_etcd.replay._replay import (
    replay_into as replay_into,
)
from tattler_etcd.replay._replay import (
    run_replay as run_replay,
)
from tattler_etcd.replay._transport import (
    FILTERED_HEADERS as FILTERED_HEADERS,
)
from tattler_etcd.replay._transport import (
    Gate as Gate,
)
from tattler_etcd.replay._transport import (
    Recorder as Recorder,
)
from tattler_etcd.replay._transport import (
    RecordingTransport as RecordingTransport,
)
from tattler_etcd.replay._transport import (
    is_watch_request as is_watch_request,
)

__all__ = [
    "BUNDLED_RECORDING",
    "FILTERED_HEADERS",
    "FORMAT_VERSION",
    "METADATA_KEY",
    "WITHHELD",
    "Gate",
    "ReaderFactory",
    "Recorder",
    "RecordingInfo",
    "RecordingTransport",
    "Timing",
    "bundled_recording",
    "check_resources",
    "dump_cassette",
    "is_watch_request",
    "playback",
    "read_recording",
    "readers_for",
    "record_apiserver",
    "record_etcd",
    "replay_into",
    "run_replay",
    "scrub_served_object",
    "scrub_stored_value",
]
