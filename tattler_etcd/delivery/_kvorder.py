"""Keep the KV mirror monotonic: every KV put is a compare-and-set on its key, newest version wins.

Why: replicas batch differently (the batcher keeps only the newest change
per uid in a window), so replica A may put resourceVersion 72 of a key that
replica B merged into 152. When A is late (a resend after a reconnect), an
unconditional put of 72 would land after B's 152 and the mirror would go
back. JetStream deduplicates stream messages by ``Nats-Msg-Id``, but two
different changes are two different messages.

How: each KV put carries ``Nats-Expected-Last-Subject-Sequence`` (the KV
stream's sequence of the key's last message; ``0``: the key has none yet),
so the server stores it only if nobody wrote the key since we last saw it.
:class:`KvOrder` keeps, per key subject, ``(sequence, resourceVersion, uid,
deleted)`` learned from

* one pass over the bucket at start: a headers-only pull consumer delivering
  the last message per subject, so a restart on a populated bucket needs no
  read per key (:meth:`KvOrder.load`);
* every acknowledgement (the PubAck carries the sequence);
* the reads after a lost compare-and-set (:meth:`KvOrder.reread`).

Before each put, :meth:`KvOrder.expect` compares our entry with what the key
is known to hold: older or the same -> no put at all (counted in
:attr:`KvOrder.stale`, logged at debug by key); newer -> one conditional
put, no extra round trip. A window of puts holds each key once
(:func:`window_end`): a second put of a key waits for the first one's
sequence. When the server answers "wrong last sequence" (error 10071:
another replica wrote the key), the key's current message is read (its
``Tattler-Resource-Version`` and ``Tattler-Uid`` headers; the JSON body for a
value written without them), remembered, and the put is decided again
against it. KV puts also carry ``Nats-Msg-Id``: the
bucket's stream drops the second copy of the same change (from another
replica, or a resend) before any compare-and-set, with no read.

The order of versions (:func:`newer`): etcd resourceVersions are revisions,
comparable as integers across keys and uids. A higher one is newer. At the
same resourceVersion, a DELETE of a uid is newer than that uid's object
(the delete of a just-written object), and an object of another uid is newer
than a DELETE (the reflector's ghost rule gives a replaced uid's DELETE the
new object's resourceVersion). So a late DELETE of uid X never deletes a
re-created key's uid Y, and a new uid's SNAPSHOT/ADD replaces the delete
marker of the old one. A resourceVersion that is not an integer cannot be
compared: that put is made over whatever the key holds (still conditional).
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

from tattler_etcd.data import ChangeType

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tattler_etcd.data import Entry

__all__ = ["EXPECTED_SEQUENCE", "ROUNDS", "WRONG_LAST_SEQUENCE", "Known", "KvOrder", "ack_sequence",
           "known_version", "newer", "window_end"]

logger = logging.getLogger("tattler_etcd.delivery")

#: JetStream's compare-and-set header: the sequence of the subject's last message (0: none yet).
EXPECTED_SEQUENCE = "Nats-Expected-Last-Subject-Sequence"
#: JetStream's err_code when that header does not match: another writer was first.
WRONG_LAST_SEQUENCE = 10071
#: Messages per fetch of the start-up read.
_SCAN_CHUNK = 1000
#: Seconds one fetch of the start-up read may wait.
_SCAN_WAIT = 5.0
#: Read-and-put-again rounds for one window's lost compare-and-sets before the window is resent later.
ROUNDS = 8
#: What a value without a version we can read counts as: older than any entry.
_UNVERSIONED = -1

_SEQ = re.compile(rb'"seq"\s*:\s*(\d+)')

#: (sequence, resourceVersion or None: not known yet, uid, deleted)
Known = tuple[int, int | None, str, bool]


def _int(text: object) -> int | None:
    try:
        return int(text)  # type: ignore[call-overload,no-any-return]
    except (TypeError, ValueError):
        return None


def ack_sequence(data: bytes) -> int:
    """The stream sequence in a PubAck (``{"stream":"KV_b", "seq":5}``), 0 if it has none."""
    m = _SEQ.search(data)
    return int(m.group(1)) if m else 0


def newer(rv: int, uid: str, deleted: bool, cur_rv: int, cur_uid: str, cur_deleted: bool) -> bool:
    """Whether version ``(rv, uid, deleted)`` is newer than the one a key holds (see the module docstring)."""
    if rv != cur_rv:
        return rv > cur_rv
    if uid == cur_uid:
        return deleted and not cur_deleted
    return cur_deleted and not deleted


def window_end(ops: Sequence[Any], start: int, most: int) -> int:
    """Where a window of ops from ``start`` ends: after ``most``, or before a KV subject comes again.

    A key's second put in one window would be sent before the first one's
    sequence is known and lose its compare-and-set to it (a read and a put
    more); in the next window it is one conditional put. (One key twice in a
    batch: an object deleted and made again, two uids.)
    """
    seen: set[str] = set()
    end, last = start, min(start + most, len(ops))
    while end < last:
        op = ops[end]
        if not op.stream:
            if op.subject in seen:
                break
            seen.add(op.subject)
        end += 1
    return end


def _version(entry: Entry) -> tuple[int | None, str, bool]:
    return _int(entry.resource_version), entry.uid, entry.change is ChangeType.DELETE


def known_version(seq: int, headers: dict[str, str] | None, data: bytes | None) -> Known:
    """What a KV message says about its key; ``data`` (the body) is read only when the headers say nothing."""
    headers = headers or {}
    deleted = headers.get("KV-Operation") in ("DEL", "PURGE")
    rv = _int(headers.get("Tattler-Resource-Version"))
    uid = headers.get("Tattler-Uid", "")
    if rv is None and data is not None:
        # A value written before the version headers (or by another client): its body may be an entry's JSON.
        try:
            body = json.loads(data)
            rv, uid = _int(body.get("resourceVersion")), str(body.get("uid", ""))
        except (ValueError, AttributeError):
            pass
        if rv is None:
            rv = _UNVERSIONED
    return seq, rv, uid, deleted


class KvOrder:
    """What each key of one bucket is known to hold, and the decision for each put (module docstring).

    Attributes:
        known: KV subject -> (sequence, resourceVersion, uid, deleted); one
            small tuple per key the bucket has, delete markers included.
        stale: puts not made because the key held that version or a newer one.
        conflicts: puts whose compare-and-set lost (another writer was first), so the key was read.
    """

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self.stream = f"KV_{bucket}"
        self.prefix = f"$KV.{bucket}."
        self.known: dict[str, Known] = {}
        self.stale = 0
        self.conflicts = 0

    def expect(self, subject: str, entry: Entry) -> str | None:
        """The expected-last-sequence header for putting ``entry`` at ``subject``; None: do not put it."""
        known = self.known.get(subject)
        if known is None:
            return "0"
        seq, cur_rv, cur_uid, cur_deleted = known
        if cur_rv is None:
            return "0"  # no version in its headers (start-up read): the lost compare-and-set reads the body
        rv, uid, deleted = _version(entry)
        if rv is None or newer(rv, uid, deleted, cur_rv, cur_uid, cur_deleted):
            return str(seq)
        self.stale += 1
        logger.debug("nats: KV %s holds this version or a newer one: put skipped", subject[len(self.prefix):])
        return None

    def stored(self, subject: str, entry: Entry, seq: int) -> None:
        """``entry`` was stored at ``subject`` with stream sequence ``seq`` (acknowledged, or a duplicate).

        A duplicate's sequence is its first copy's, maybe older than what we
        know of the key already: the later sequence is kept.
        """
        known = self.known.get(subject)
        if seq > 0 and (known is None or seq > known[0]):
            rv, uid, deleted = _version(entry)
            self.known[subject] = (seq, _UNVERSIONED if rv is None else rv, uid, deleted)

    async def load(self, js: Any) -> None:
        """(asyncio) One pass over the bucket: the last message's headers per key, no bodies.

        A failure leaves what was read (and is logged): every put stays a
        compare-and-set, so an unknown key costs a read, never a wrong value.
        """
        import time

        import nats
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        t0 = time.monotonic()
        config = ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT, ack_policy=AckPolicy.NONE,
                                headers_only=True, inactive_threshold=60.0)
        sub = None
        read = 0
        try:
            sub = await js.pull_subscribe(self.prefix + ">", stream=self.stream, config=config)
            # At most what was there when the pass began: later puts are the writers' own business.
            remaining = int((await sub.consumer_info()).num_pending)
            while remaining > 0:
                for m in await sub.fetch(min(remaining, _SCAN_CHUNK), timeout=_SCAN_WAIT):
                    self.known[m.subject] = known_version(m.metadata.sequence.stream, m.headers, None)
                    read += 1
                    remaining = min(remaining - 1, m.metadata.num_pending)
        except (nats.errors.Error, OSError) as exc:
            logger.warning("nats: reading the keys of bucket %s: %s; %d read, the rest are read when written",
                           self.bucket, type(exc).__name__, read)
        finally:
            if sub is not None:
                try:
                    await sub.unsubscribe()
                except Exception as exc:  # noqa: BLE001 - the consumer goes by itself when inactive
                    logger.debug("nats: unsubscribe: %s", type(exc).__name__)
        logger.info("nats: bucket %s: %d keys' last sequences read in %.2fs", self.bucket, read,
                    time.monotonic() - t0)

    async def reread(self, js: Any, subjects: Sequence[str]) -> str:
        """(asyncio) Read the current message of each subject (together) and remember it; "" or why not."""
        import asyncio

        import nats

        self.conflicts += len(subjects)
        unique = list(dict.fromkeys(subjects))
        answers = await asyncio.gather(*(js.get_msg(self.stream, subject=s) for s in unique),
                                       return_exceptions=True)
        why = ""
        for subject, answer in zip(unique, answers, strict=True):
            if isinstance(answer, nats.js.errors.NotFoundError):
                self.known.pop(subject, None)  # no message any more (purged): the next put expects 0
            elif isinstance(answer, BaseException):
                if not isinstance(answer, nats.errors.Error | OSError):
                    raise answer
                why = why or f"{type(answer).__name__} reading the key"
            else:
                self.known[subject] = known_version(answer.seq, answer.headers, answer.data)
        return why
