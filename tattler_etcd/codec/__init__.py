"""The Kubernetes codec: etcd values <-> the JSON-shaped dicts the APIServer serves.

etcd holds built-in kinds in the APIServer's protobuf storage encoding
(``k8s\\0`` + ``runtime.Unknown``) and custom resources as JSON. This package
reads and writes both, for every built-in kind of every release our schema
covers (``_generated/schema.json``, made by ``tools/gen_schema.py``), with
cheap partial reads (:func:`peek`) and in-place redaction (:func:`redact`, or
:func:`parse` + :func:`redact_parsed` to keep the parsed object) for the
pipeline. See ``docs/codec.md``.

Errors are the :class:`tattler_etcd.errors.CodecError` family; nothing else
escapes for bad input.
"""

from __future__ import annotations

from tattler_etcd.codec._api import DEFAULT_MAX_SIZE as DEFAULT_MAX_SIZE
from tattler_etcd.codec._api import MAGIC as MAGIC
from tattler_etcd.codec._api import Meta as Meta
from tattler_etcd.codec._api import Parsed as Parsed
from tattler_etcd.codec._api import decode as decode
from tattler_etcd.codec._api import decode_watch_event as decode_watch_event
from tattler_etcd.codec._api import encode as encode
from tattler_etcd.codec._api import is_json as is_json
from tattler_etcd.codec._api import parse as parse
from tattler_etcd.codec._api import peek as peek
from tattler_etcd.codec._api import split_list as split_list
from tattler_etcd.codec._api import to_bytes as to_bytes
from tattler_etcd.codec._api import to_dict as to_dict
from tattler_etcd.codec._api import wrap as wrap
from tattler_etcd.codec._convert import UNKNOWN_KEY as UNKNOWN_KEY
from tattler_etcd.codec._fast import json_bytes as json_bytes
from tattler_etcd.codec._convert import counters as counters
from tattler_etcd.codec._paths import kind_names as kind_names
from tattler_etcd.codec._paths import kind_paths as kind_paths
from tattler_etcd.codec._paths import leaf_types as leaf_types
from tattler_etcd.codec._paths import star_labels as star_labels
from tattler_etcd.codec._redact import Replace as Replace
from tattler_etcd.codec._redact import discard_unknown as discard_unknown
from tattler_etcd.codec._redact import drop_unknown as drop_unknown
from tattler_etcd.codec._redact import redact as redact
from tattler_etcd.codec._redact import redact_parsed as redact_parsed
from tattler_etcd.codec._redact import size_changed as size_changed

__all__ = [
    "DEFAULT_MAX_SIZE",
    "MAGIC",
    "UNKNOWN_KEY",
    "Meta",
    "Parsed",
    "Replace",
    "counters",
    "decode",
    "decode_watch_event",
    "discard_unknown",
    "drop_unknown",
    "encode",
    "is_json",
    "json_bytes",
    "kind_names",
    "kind_paths",
    "leaf_types",
    "parse",
    "peek",
    "redact",
    "redact_parsed",
    "size_changed",
    "split_list",
    "star_labels",
    "to_bytes",
    "to_dict",
    "wrap",
]
