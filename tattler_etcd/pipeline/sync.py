"""The "first sync delivered" signal: what a processor's ``synced(info)`` is told, once.

When every reader has handed on its initial state, the runner sends a marker
(:class:`SyncMarker`, not an entry) down the same channels, after those
entries: safety and preprocess pass it on, batching sends its open batch
first, routing hands each processor that has an ``async def synced(self,
info)`` method a :class:`SyncInfo` in order with its batches. So ``synced``
is called exactly once, after every batch holding entries of the initial
sync was given to that processor (never when the run ends before every reader
synced). What a processor can do then that it could not before: know which
of the things it holds no reader confirmed (the NATS KV sweep,
``docs/delivery.md``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

__all__ = ["ReaderSync", "ResourceSync", "SyncInfo", "SyncMarker"]


@dataclasses.dataclass(frozen=True, slots=True)
class ResourceSync:
    """How one resource's first sync went.

    Attributes:
        resource: the resource as the user names it (``pods``, ``deployments``,
            ``widgets.example.com``).
        full_list: True when the first sync was a full list (every object of
            the resource was handed on); False for a resume from a saved
            revision, bookmark or index.
        revision: the list's revision (etcd: the pinned revision; APIServer:
            the list's resourceVersion); ``""`` when not known.
    """

    resource: str
    full_list: bool
    revision: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class ReaderSync:
    """One reader's first sync: its resources (none for a reader that does not report them)."""

    name: str
    resources: tuple[ResourceSync, ...] = ()

    @property
    def full_list(self) -> bool:
        """Every resource of the reader was fully listed (False when it reports none)."""
        return bool(self.resources) and all(r.full_list for r in self.resources)


@dataclasses.dataclass(frozen=True, slots=True)
class SyncInfo:
    """What ``processor.synced(info)`` is given.

    Attributes:
        readers: each reader's first sync, in the order readers were added.
        dropped: some batch was dropped for this processor (policy DROP)
            before the marker: it did not see the whole initial state, so it
            must not act as if it had (no sweep).
    """

    readers: tuple[ReaderSync, ...]
    dropped: bool = False

    def full_lists(self) -> Mapping[str, str]:
        """Each resource every reader of it fully listed at a known revision -> that revision (the highest).

        A resource some reader resumed, or listed at an unknown revision, is left out.
        """
        out: dict[str, str] = {}
        unsure: set[str] = set()
        for reader in self.readers:
            for r in reader.resources:
                if not (r.full_list and r.revision.isdigit()):
                    unsure.add(r.resource)
                    continue
                old = out.get(r.resource)
                if old is None or int(r.revision) > int(old):
                    out[r.resource] = r.revision
        return {k: v for k, v in out.items() if k not in unsure}


@dataclasses.dataclass(frozen=True, slots=True)
class SyncMarker:
    """The marker the runner sends through the stages (a distinct object on the chunk channels, not an entry)."""

    readers: tuple[ReaderSync, ...]
