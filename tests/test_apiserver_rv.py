"""resourceVersion choice (a table, as client-go tests it) and the backoff policy."""

from __future__ import annotations

import pytest

from tattler_etcd.readers import Backoff
from tattler_etcd.readers.apiserver.rv import list_params, list_resource_version, watch_params


@pytest.mark.parametrize(
    ("last_seen", "unavailable", "consistent_first", "expected"),
    [
        ("", False, False, "0"),  # first list: any version, from the cache
        ("", False, True, ""),  # first list, asked to be consistent (and paged)
        ("", True, False, ""),  # lost our place before ever listing: consistent read
        ("42", False, False, "42"),  # periodic relist: not older than what we saw
        ("42", False, True, "42"),
        ("42", True, False, ""),  # after a 410: consistent read, never the cache
        ("42", True, True, ""),
    ],
)
def test_list_resource_version(last_seen: str, unavailable: bool, consistent_first: bool, expected: str) -> None:
    assert list_resource_version(last_seen, unavailable=unavailable, consistent_first=consistent_first) == expected


@pytest.mark.parametrize(
    ("rv", "limit", "token", "expected"),
    [
        ("0", 500, None, {"limit": "500", "resourceVersion": "0"}),
        ("", 500, None, {"limit": "500"}),
        ("42", 500, None, {"limit": "500", "resourceVersion": "42", "resourceVersionMatch": "NotOlderThan"}),
        ("42", 500, "tok", {"limit": "500", "continue": "tok"}),  # the token pins the version
        ("42", None, None, {"resourceVersion": "42", "resourceVersionMatch": "NotOlderThan"}),
    ],
)
def test_list_params(rv: str, limit: int | None, token: str | None, expected: dict[str, str]) -> None:
    assert list_params(rv, limit=limit, continue_token=token) == expected


def test_watch_params_ask_for_bookmarks_and_resume_from_rv() -> None:
    assert dict(watch_params("42", timeout_seconds=400)) == {
        "watch": "1", "allowWatchBookmarks": "true", "timeoutSeconds": "400", "resourceVersion": "42",
    }


@pytest.mark.parametrize("rv", ["", "42"])
def test_watch_params_for_watch_list(rv: str) -> None:
    assert dict(watch_params(rv, timeout_seconds=300, send_initial_events=True)) == {
        "watch": "1", "allowWatchBookmarks": "true", "timeoutSeconds": "300",
        "sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan", "resourceVersion": rv,
    }


def test_backoff_doubles_to_the_cap_with_jitter_and_resets_after_quiet() -> None:
    draws = iter([0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    b = Backoff(rand=lambda: next(draws))
    delays = [b.next_delay(now) for now in (0, 1, 2, 3, 4, 5, 6, 7)]
    assert delays == [0.8, 1.6 * 1.5, 3.2, 6.4, 12.8, 25.6, 30.0, 60.0]
    # two minutes without a failure: back to the start
    assert b.next_delay(7 + 121) == 0.8
