"""The `dledgermq` command, one module per command family.

`entry` assembles the parser and runs a command; `common` holds what the families share;
`cluster` and `server` run processes (with `launcher` and `status_view`); `topic`,
`send`, `consume`, `query`, `group`, `admin`, `dlq` and `txn` call the Python client.
"""

from dledgermq.cli.entry import main

__all__ = ["main"]
