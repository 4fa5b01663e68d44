"""Readers: the sources that feed the pipeline.

A reader is any object with a ``name`` and this ``run`` coroutine (see
:class:`Reader`). The runner hands each reader its own clone of the pipeline's
input channel; the reader owns it (``async with send:``) and closes it when it
ends, so the pipeline drains once every reader is done.

Readers send *chunks* (lists of entries), not single entries: a channel hop
costs about as much as scrubbing a small Pod, and a first list of 200,000
objects should not pay it 200,000 times. A chunk is whatever the reader got in
one read (a page of a range, one watch message).

Both readers share one policy, :mod:`._reflector` (list, index, watch,
relist, back-off, status); :class:`Backoff` and the status types come from there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tattler_etcd.readers._protocol import Reader as Reader
    from tattler_etcd.readers._reflector import Backoff as Backoff
    from tattler_etcd.readers._reflector import ReaderStatus as ReaderStatus
    from tattler_etcd.readers._reflector import ResourceStatus as ResourceStatus
else:
    from tattler_etcd._lazy import lazy_exports

    # On first use: `tattler_etcd.readers.etcd.keys` (the CLI's resource names) needs neither trio nor the codec.
    __getattr__, __dir__ = lazy_exports(globals(), {
        "Reader": "tattler_etcd.readers._protocol",
        "Backoff": "tattler_etcd.readers._reflector",
        "ReaderStatus": "tattler_etcd.readers._reflector",
        "ResourceStatus": "tattler_etcd.readers._reflector",
    })

__all__ = ["Backoff", "Reader", "ReaderStatus", "ResourceStatus"]
