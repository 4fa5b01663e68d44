"""Which resourceVersion to ask for, as client-go's reflector decides it.

Pure functions, no I/O, so the rules can be read in one place and tested as a
table. The rules, and why:

* **First list: ``"0"``.** "Any version" lets the APIServer answer from its
  watch cache instead of a quorum read of etcd: cheap for the server, and the
  watch that follows catches up on anything newer.
* **Relist after we lost our place (410 Gone / Expired): ``""``.** The version we
  held is no longer served, and ``"0"`` might hand back a cache even older than
  it; only a consistent (quorum) read is sure to move forward.
* **Any other relist: the last version we saw.** "Not older than" what we
  already delivered, so a periodic relist never goes back in time.
* **A watch resumes from the last version seen**, events and bookmarks alike:
  bookmarks exist precisely to move that version forward on quiet resources.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["list_params", "list_resource_version", "watch_params"]


def list_resource_version(last_seen: str, *, unavailable: bool, consistent_first: bool = False) -> str:
    """The ``resourceVersion`` for the next LIST.

    ``last_seen`` is the last version delivered ("" before the first list);
    ``unavailable`` is True after the server said that version is gone (410).
    ``consistent_first`` makes the first list a consistent read too: the
    APIServer's cache ignores ``limit`` (one response holding every object),
    so a reader of a very large cluster may prefer etcd's paged reads.
    """
    if unavailable:
        return ""
    if not last_seen:
        return "" if consistent_first else "0"
    return last_seen


def list_params(
    resource_version: str, *, limit: int | None, continue_token: str | None
) -> dict[str, str]:
    """Query parameters for one LIST page.

    A continuation carries everything the server needs (the token pins the
    version of the first page), so ``resourceVersion`` is left out then, as the
    APIServer requires. With a version other than ``""`` the APIServer may
    answer from its cache, so ``resourceVersionMatch=NotOlderThan`` makes the
    "never older than what we saw" promise explicit.
    """
    params: dict[str, str] = {}
    if continue_token:
        params["continue"] = continue_token
        if limit:
            params["limit"] = str(limit)
        return params
    if limit:
        params["limit"] = str(limit)
    if resource_version:
        params["resourceVersion"] = resource_version
        if resource_version != "0":
            params["resourceVersionMatch"] = "NotOlderThan"
    return params


def watch_params(
    resource_version: str,
    *,
    timeout_seconds: int,
    send_initial_events: bool = False,
) -> Mapping[str, str]:
    """Query parameters for one WATCH.

    Bookmarks are always requested (never assumed: a server may ignore the
    flag, and the reader must still work). ``send_initial_events`` asks for a
    streaming WatchList: the current state as ADDED events, then a bookmark
    annotated ``k8s.io/initial-events-end``; the APIServer requires
    ``resourceVersionMatch=NotOlderThan`` with it.
    """
    params = {
        "watch": "1",
        "allowWatchBookmarks": "true",
        "timeoutSeconds": str(timeout_seconds),
    }
    if send_initial_events:
        params["sendInitialEvents"] = "true"
        params["resourceVersionMatch"] = "NotOlderThan"
        params["resourceVersion"] = resource_version
    elif resource_version:
        params["resourceVersion"] = resource_version
    return params
