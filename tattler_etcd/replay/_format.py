"""The recording file: a vcrpy cassette plus what a replay needs to ask the same questions.

A recording is an ordinary vcrpy cassette (``version: 1``, ``interactions``),
so vcrpy itself plays it back. Next to the interactions it carries a
``metadata.tattler_etcd`` mapping: vcrpy's loader reads ``interactions`` only
(vcrpy 9.4 also keeps ``metadata`` as its own per-cassette store), so the key is
invisible to playback. It holds the recording's format version and the reader
settings that decide the requests (endpoint, key prefix, resources, page
size): a replay must send byte-identical requests, because every etcd call is
a POST to the same few paths and only the body tells them apart.

The same mapping holds the recorded run's *timing* (format 2): for each
interaction (by its index in ``interactions``), the offset in seconds from
the start of the recording at which its response arrived, and, for a
streamed body (a watch), the offset and size of every line (or protobuf
frame) and of the body's end. vcrpy's interactions stay exactly as vcrpy
writes them; a replay paces the bodies it plays on a virtual clock from this
(see :mod:`tattler_etcd.replay._replay`).

Validation happens here, before vcrpy sees the file, because vcrpy treats an
unreadable cassette as an empty one and would report the first request as
"not found", which names neither the file nor the cause.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tattler_etcd.errors import RecordingError

__all__ = [
    "FORMAT_VERSION",
    "METADATA_KEY",
    "RecordingInfo",
    "Timing",
    "dump_cassette",
    "read_recording",
]

#: The version of our recording format (the ``metadata.tattler_etcd.format`` key).
#: Bump it when a replay of an older file would ask different questions or
#: read the answers differently; an old file then fails with a clear message.
#: 2: the timing of every response and streamed line (format 1 had none, so
#: a replay of it could not reproduce the recorded run's batches).
FORMAT_VERSION = 2

#: The key under the cassette's ``metadata`` that holds :class:`RecordingInfo`.
METADATA_KEY = "tattler_etcd"

#: vcrpy's own cassette format version (``vcr.serialize.CASSETTE_FORMAT_VERSION``).
_VCR_VERSION = 1

_SOURCES = ("etcd", "apiserver")

#: libyaml's loader (in C, faster on large cassettes) when PyYAML was built with it, else PyYAML's own.
_Loader: type[yaml.SafeLoader] | type[yaml.CSafeLoader]
try:
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _Loader = yaml.SafeLoader


#: Offsets are stored rounded to this many decimals (milliseconds).
_DECIMALS = 3


@dataclasses.dataclass(frozen=True)
class Timing:
    """When one interaction's answer arrived in the recorded run, in seconds from its start.

    Attributes:
        at: when the response arrived (its headers; for a unary reply, the
            whole body, which is read before it is handed on).
        lines: for a streamed body (a watch), one ``(offset, size)`` per line
            or protobuf frame, in body order: when the reader received it and
            how many bytes of the body it is. Empty for a unary reply.
        end: for a streamed body, when it ended (the server closed it, or
            the recorder cut it); None for a unary reply.
    """

    at: float
    lines: tuple[tuple[float, int], ...] = ()
    end: float | None = None

    @property
    def streamed(self) -> bool:
        """True for a streamed (watch) body, which a replay hands over line by line."""
        return self.end is not None

    def to_metadata(self) -> dict[str, Any]:
        """The plain-YAML mapping stored under ``timing.<index>``."""
        out: dict[str, Any] = {"at": round(self.at, _DECIMALS)}
        if self.end is not None:
            out["lines"] = [[round(t, _DECIMALS), n] for t, n in self.lines]
            out["end"] = round(self.end, _DECIMALS)
        return out

    @classmethod
    def from_metadata(cls, doc: Any, where: str) -> Timing:
        """Read one entry; errors name ``where`` (file and index)."""
        if not isinstance(doc, dict):
            raise RecordingError(f"{where}: not a mapping")
        try:
            at = float(doc["at"])
            end = doc.get("end")
            lines = tuple((float(t), int(n)) for t, n in doc.get("lines") or ())
            timing = cls(at=at, lines=lines, end=None if end is None else float(end))
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordingError(f"{where}: bad timing ({type(exc).__name__}: {exc})") from None
        offsets = [timing.at, *(t for t, _ in timing.lines)]
        if timing.end is not None:
            offsets.append(timing.end)
        if any(not (t >= 0) for t in offsets) or offsets != sorted(offsets):
            raise RecordingError(f"{where}: offsets must be non-negative and in order")
        if any(n < 1 for _, n in timing.lines):
            raise RecordingError(f"{where}: a line has no bytes")
        if timing.lines and timing.end is None:
            raise RecordingError(f"{where}: lines without an end")
        return timing


@dataclasses.dataclass(frozen=True)
class RecordingInfo:
    """What a recording says about itself: enough to rebuild the reader that made it.

    Attributes:
        source: ``"etcd"`` or ``"apiserver"``: which reader made the requests.
        resources: the resources the reader read, in the order it was given them.
        endpoint: the base URL the requests went to (no connection is made on
            replay; vcrpy answers, but the URIs must match).
        prefix: the etcd key prefix (``/registry``).
        page_size: keys per range request in a list.
        options: other reader settings that shape requests (source-specific).
        interactions: how many request/response pairs the file holds.
        watch_events: how many watch events the recorder let through.
        stopped_by: why recording stopped: ``"events"``, ``"duration"``,
            ``"stop"`` (the caller) or ``"reader"`` (the reader ended by itself).
        format: the recording format version (:data:`FORMAT_VERSION`).
        timing: one :class:`Timing` per interaction, in file order (empty
            until the file is written or read).
    """

    source: str
    resources: tuple[str, ...]
    endpoint: str
    prefix: str = "/registry"
    page_size: int = 500
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    interactions: int = 0
    watch_events: int = 0
    stopped_by: str = ""
    format: int = FORMAT_VERSION
    timing: tuple[Timing, ...] = ()

    @property
    def duration(self) -> float:
        """The recorded run's length in seconds: its last response, line or body end."""
        return max((t.end if t.end is not None else t.at for t in self.timing), default=0.0)

    def to_metadata(self) -> dict[str, Any]:
        """The mapping written under ``metadata.tattler_etcd`` (plain YAML types only)."""
        return {
            "format": self.format,
            "source": self.source,
            "resources": list(self.resources),
            "endpoint": self.endpoint,
            "prefix": self.prefix,
            "page_size": self.page_size,
            "options": dict(self.options),
            "interactions": self.interactions,
            "watch_events": self.watch_events,
            "stopped_by": self.stopped_by,
            "timing": {i: t.to_metadata() for i, t in enumerate(self.timing)},
        }

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any], path: str) -> RecordingInfo:
        """Read and check the mapping; errors name ``path`` and the bad field."""
        fmt = meta.get("format")
        if fmt != FORMAT_VERSION:
            raise RecordingError(
                f"{path}: recording format {fmt!r}; this tattler-etcd reads format {FORMAT_VERSION} "
                "(re-record it with `tattler-etcd record`)"
            )
        source = meta.get("source")
        if source not in _SOURCES:
            raise RecordingError(f"{path}: metadata.{METADATA_KEY}.source is {source!r}, not one of {_SOURCES}")
        resources = meta.get("resources")
        if not isinstance(resources, list) or not resources or not all(isinstance(r, str) and r for r in resources):
            raise RecordingError(f"{path}: metadata.{METADATA_KEY}.resources must be a non-empty list of names")
        endpoint = meta.get("endpoint")
        if not isinstance(endpoint, str) or "://" not in endpoint:
            raise RecordingError(f"{path}: metadata.{METADATA_KEY}.endpoint must be a URL")
        options = meta.get("options") or {}
        if not isinstance(options, dict):
            raise RecordingError(f"{path}: metadata.{METADATA_KEY}.options must be a mapping")
        timing = meta.get("timing")
        if not isinstance(timing, dict):
            raise RecordingError(f"{path}: metadata.{METADATA_KEY}.timing must be a mapping of interaction index "
                                 "to timing")
        try:
            count = int(meta.get("interactions", 0))
        except (TypeError, ValueError) as exc:
            raise RecordingError(f"{path}: metadata.{METADATA_KEY}: {exc}") from exc
        if set(timing) != set(range(count)):
            raise RecordingError(f"{path}: metadata.{METADATA_KEY}.timing must have one entry for each of the "
                                 f"{count} interactions (by index)")
        timings = tuple(Timing.from_metadata(timing[i], f"{path}: metadata.{METADATA_KEY}.timing.{i}")
                        for i in range(count))
        try:
            return cls(
                timing=timings,
                source=source,
                resources=tuple(resources),
                endpoint=endpoint,
                prefix=str(meta.get("prefix", "/registry")),
                page_size=int(meta.get("page_size", 500)),
                options=options,
                interactions=int(meta.get("interactions", 0)),
                watch_events=int(meta.get("watch_events", 0)),
                stopped_by=str(meta.get("stopped_by", "")),
            )
        except (TypeError, ValueError) as exc:
            raise RecordingError(f"{path}: metadata.{METADATA_KEY}: {exc}") from exc


def read_recording(path: str | os.PathLike[str]) -> RecordingInfo:
    """Check that ``path`` is a replayable recording and return what it says about itself.

    Raises:
        tattler_etcd.errors.RecordingError: missing or unreadable file, not
            YAML, truncated, not a vcrpy cassette, not ours, another format
            version, or an interaction count that does not match. The message
            names the file and the problem.
    """
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecordingError(f"{name}: no such recording") from None
    except IsADirectoryError:
        raise RecordingError(f"{name}: is a directory, not a recording") from None
    except UnicodeDecodeError as exc:
        raise RecordingError(f"{name}: not a cassette (not UTF-8 text at byte {exc.start})") from None
    except OSError as exc:
        raise RecordingError(f"{name}: cannot read: {exc.strerror}") from exc
    if not text.strip():
        raise RecordingError(f"{name}: empty file, not a cassette")
    data = _load_yaml(text, name)
    if not isinstance(data, dict):
        raise RecordingError(f"{name}: not a cassette (the YAML is a {type(data).__name__}, not a mapping)")
    if "interactions" not in data:
        raise RecordingError(f"{name}: not a cassette (no 'interactions' key)")
    # yaml.dump sorts keys, so a file cut short at a line boundary loses 'version' (the last key).
    if "version" not in data:
        raise RecordingError(f"{name}: truncated cassette (no 'version' key, which vcrpy writes last)")
    if data.get("version") != _VCR_VERSION:
        raise RecordingError(
            f"{name}: vcrpy cassette version {data.get('version')!r}; expected {_VCR_VERSION}"
        )
    interactions = data["interactions"]
    if not isinstance(interactions, list):
        raise RecordingError(f"{name}: not a cassette ('interactions' is not a list)")
    for i, item in enumerate(interactions):
        if not (isinstance(item, dict) and isinstance(item.get("request"), dict)
                and isinstance(item.get("response"), dict)):
            raise RecordingError(f"{name}: interaction {i} is not a request/response pair")
    meta = data.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get(METADATA_KEY), dict):
        raise RecordingError(
            f"{name}: a vcrpy cassette, but not a tattler-etcd recording (no metadata.{METADATA_KEY}); "
            "make one with `tattler-etcd record`"
        )
    info = RecordingInfo.from_metadata(meta[METADATA_KEY], name)
    if info.interactions != len(interactions):
        raise RecordingError(
            f"{name}: truncated or edited cassette: metadata says {info.interactions} interactions, "
            f"the file holds {len(interactions)}"
        )
    for i, (item, timing) in enumerate(zip(interactions, info.timing, strict=True)):
        if timing.streamed:
            body = (item["response"].get("body") or {}).get("string") or b""
            size = len(body.encode("utf-8") if isinstance(body, str) else body)
            if sum(n for _, n in timing.lines) != size:
                raise RecordingError(
                    f"{name}: interaction {i}: the timing's lines cover {sum(n for _, n in timing.lines)} bytes, "
                    f"the body holds {size} (edited cassette?)"
                )
    return info


def _load_yaml(text: str, name: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        if mark is not None and mark.index >= len(text) - 1:
            raise RecordingError(f"{name}: truncated YAML (it ends inside a value{where})") from None
        raise RecordingError(f"{name}: not a cassette (invalid YAML{where}: {problem})") from None


def dump_cassette(
    path: str | os.PathLike[str],
    interactions: Sequence[tuple[dict[str, Any], dict[str, Any]]],
    info: RecordingInfo,
) -> None:
    """Write ``interactions`` (vcrpy request dicts and response dicts) and ``info`` as a cassette.

    ``info.timing`` holds one :class:`Timing` per interaction, in the same order.

    The layout is vcrpy's own (its serializer, so its loader reads it back);
    the file is written to a temporary name and renamed, so a crash never
    leaves half a cassette under the real name.
    """
    from vcr.serializers import yamlserializer  # here: vcrpy imports aiohttp (~250 ms), needed only to write

    if len(info.timing) != len(interactions):
        raise ValueError(f"{len(interactions)} interactions but {len(info.timing)} timings")

    doc = {
        "version": _VCR_VERSION,
        "interactions": [{"request": req, "response": resp} for req, resp in interactions],
        "metadata": {METADATA_KEY: dataclasses.replace(info, interactions=len(interactions)).to_metadata()},
    }
    text = yamlserializer.serialize(doc)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
