"""Broadcasting mode's consumer offsets, kept by the client in a local file
(RocketMQ's `LocalFileOffsetStore`).

In broadcasting mode every consumer of a group reads every message, so each one has its
own progress: it is not stored on the broker. The file is JSON, written atomically (a
temporary file, fsync, rename, fsync of the directory), so a crash leaves the old or the
new version, never a torn one; it is loaded on start.

Default place: `~/.dledgermq/offsets/<group>/<client_id or "default">.json`. Two
broadcasting consumers of one group on one machine need distinct `client_id`s or files.

Blocking file I/O: async callers run `load`/`save` in a worker thread.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

from dledgermq.client.message import MessageQueue

FORMAT_VERSION = 1
_UNSAFE = re.compile(r"[^A-Za-z0-9_.@%-]")


class OffsetFileError(ValueError):
    """The offset file exists but cannot be read as one (the consumer refuses to start
    rather than silently re-consume or skip everything)."""


def default_offset_file(group: str, client_id: str | None = None) -> Path:
    """Where a broadcasting consumer keeps its offsets unless told otherwise."""
    name = _UNSAFE.sub("_", client_id or "default")
    return Path.home() / ".dledgermq" / "offsets" / _UNSAFE.sub("_", group) / f"{name}.json"


class LocalOffsetStore:
    """The next offset to consume per queue, for one consumer, in one file."""

    def __init__(self, path: Path | str, group: str) -> None:
        self.path = Path(path).expanduser()
        self.group = group
        self._offsets: dict[MessageQueue, int] = {}

    def load(self) -> dict[MessageQueue, int]:
        """Read the file (a missing file is an empty store).

        Raises:
            OffsetFileError: unreadable JSON, another group's file, or malformed entries.
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(text)
            if data.get("group") != self.group:
                raise OffsetFileError(
                    f"{self.path} holds offsets of group {data.get('group')!r}, not {self.group!r}"
                )
            offsets = {
                MessageQueue(str(e["topic"]), str(e["broker_name"]), int(e["queue_id"])): int(
                    e["offset"]
                )
                for e in data["offsets"]
            }
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            if isinstance(err, OffsetFileError):
                raise
            raise OffsetFileError(f"{self.path} is not an offset file: {err}") from err
        self._offsets = offsets
        return dict(offsets)

    def get(self, mq: MessageQueue) -> int | None:
        return self._offsets.get(mq)

    def save(self, moved: Mapping[MessageQueue, int]) -> None:
        """Record `moved` and write every known offset to the file atomically."""
        self._offsets.update(moved)
        entries = [
            {"topic": mq.topic, "broker_name": mq.broker_name, "queue_id": mq.queue_id, "offset": o}
            for mq, o in sorted(
                self._offsets.items(), key=lambda i: (i[0].topic, i[0].broker_name, i[0].queue_id)
            )
        ]
        data = {"version": FORMAT_VERSION, "group": self.group, "offsets": entries}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            json.dump(data, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
