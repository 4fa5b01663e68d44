"""The recording file: a vcrpy cassette plus what a replay needs to ask the same questions.

A recording is an ordinary vcrpy cassette (``version: 1``, ``interactions``),
so vcrpy itself plays it back. Next to the interactions it carries a
``metadata.tattler_etcd`` mapping: vcrpy's loader reads ``interactions`` only
(vcrpy 9.4 also keeps ``metadata`` as its own per-cassette store), so the key is
invisible to playback. It holds the recording's format version and the reader
settings that decide the requests (endpoint, key prefix, resources, page
size): a replay must send byte-identical requests, because every etcd call is
a POST to the same few paths and only the body tells them apart.

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
    "dump_cassette",
    "read_recording",
]

#: The version of our recording format (the ``metadata.tattler_etcd.format`` key).
#: Bump it when a replay of an older file would ask different questions or
#: read the answers differently; an old file then fails with a clear message.
FORMAT_VERSION = 1

#: The key under the cassette's ``metadata`` that holds :class:`RecordingInfo`.
METADATA_KEY = "tattler_etcd"

#: vcrpy's own cassette format version (``vcr.serialize.CASSETTE_FORMAT_VERSION``).
_VCR_VERSION = 1

_SOURCES = ("etcd", "apiserver")


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
        try:
            return cls(
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
    return info


def _load_yaml(text: str, name: str) -> Any:
    try:
        from yaml import CSafeLoader as Loader
    except ImportError:  # pragma: no cover - PyYAML without libyaml
        from yaml import SafeLoader as Loader
    try:
        return yaml.load(text, Loader=Loader)
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

    The layout is vcrpy's own (its serializer, so its loader reads it back);
    the file is written to a temporary name and renamed, so a crash never
    leaves half a cassette under the real name.
    """
    from vcr.serializers import yamlserializer

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
