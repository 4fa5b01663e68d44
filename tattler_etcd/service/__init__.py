"""Running tattler-etcd as a service: signals, metrics and health endpoints.

* :mod:`.signals`: SIGTERM/SIGINT drain the pipeline; a second signal exits at once.
* :mod:`.http`: ``/metrics``, ``/healthz`` and ``/readyz``, served by hypercorn in the
  trio run (imported on its own: hypercorn is only loaded when serving).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tattler_etcd.service.address import parse_address as parse_address
    from tattler_etcd.service.signals import SIGNALS as SIGNALS
    from tattler_etcd.service.signals import SignalDrain as SignalDrain
    from tattler_etcd.service.signals import exit_status as exit_status
    from tattler_etcd.service.signals import run_draining_on_signals as run_draining_on_signals
else:
    from tattler_etcd._lazy import lazy_exports

    # On first use: the command's parser checks --metrics-address with .address alone (no trio).
    __getattr__, __dir__ = lazy_exports(globals(), {
        "parse_address": "tattler_etcd.service.address",
        "SIGNALS": "tattler_etcd.service.signals",
        "SignalDrain": "tattler_etcd.service.signals",
        "exit_status": "tattler_etcd.service.signals",
        "run_draining_on_signals": "tattler_etcd.service.signals",
    })

__all__ = ["SIGNALS", "SignalDrain", "exit_status", "parse_address", "run_draining_on_signals"]
