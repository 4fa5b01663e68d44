"""``--redact RULE``, ``--redact-file FILE`` and ``--keep-unknown-fields``, shared by ``run`` and ``record``.

Both commands take the same rules, so a recording hides what a live run hides.
Rules are checked before anything starts: a bad one is a ConfigError naming it.
"""

from __future__ import annotations

import argparse

__all__ = ["add_redaction_arguments", "redaction_rules"]


def add_redaction_arguments(p: argparse.ArgumentParser) -> None:
    """The redaction flags, in their own argument group."""
    g = p.add_argument_group("redaction (on top of the defaults, see docs/safety.md)")
    g.add_argument("--redact", action="append", default=[], metavar="RULE",
                   help="also redact this (repeatable): KIND:PATH (Pod:spec.containers[*].args, ConfigMap:data.*), "
                        "plural.group:PATH for custom resources, annotation:NAME, label:NAME, KIND:annotation:NAME")
    g.add_argument("--redact-file", action="append", default=[], metavar="FILE",
                   help="rules from a file: a YAML list (or a 'redact:' list), or one rule a line (repeatable)")
    g.add_argument("--keep-unknown-fields", action="store_true",
                   help="keep fields this release cannot read (default: dropped, they may hold anything)")


def redaction_rules(args: argparse.Namespace) -> list[str]:
    """The rules of ``--redact-file`` s then ``--redact`` s, checked (ConfigError naming a bad one)."""
    # Here, not at the top: the pipeline package (trio, the codec, ~200 ms) is not for the parser.
    from tattler_etcd.pipeline.redaction import Redactor, read_rules_file

    rules: list[str] = []
    for path in args.redact_file:
        rules.extend(read_rules_file(path))
    rules.extend(args.redact)
    Redactor(rules)  # check them all now, before any reader or output is opened
    return rules
