"""Maps come out with sorted keys, as the APIServer's JSON encoder writes them.

upb iterates a map in hash order, which changes from process to process; a
decoded object must not, or replays would differ byte for byte between runs.
"""

import json
from pathlib import Path

from tattler_etcd import codec


def test_decoded_maps_have_sorted_keys(testdata: Path) -> None:
    node = json.loads((testdata / "core.v1.Node.json").read_text())
    labels = {f"k{i:03d}-{(i * 7919) % 1000}": str(i) for i in range(60)}
    node["metadata"]["labels"] = dict(reversed(list(labels.items())))
    node["status"]["capacity"] = {"pods": "110", "cpu": "4", "memory": "8Gi", "ephemeral-storage": "10Gi"}
    decoded = codec.decode(codec.encode(node))
    assert list(decoded["metadata"]["labels"]) == sorted(labels)
    assert list(decoded["status"]["capacity"]) == ["cpu", "ephemeral-storage", "memory", "pods"]


def test_secret_data_keys_sorted(testdata: Path) -> None:
    secret = json.loads((testdata / "core.v1.Secret.json").read_text())
    secret["data"] = {"zeta": "AA==", "alpha": "AQ==", "mid": "Ag=="}
    assert list(codec.decode(codec.encode(secret))["data"]) == ["alpha", "mid", "zeta"]
