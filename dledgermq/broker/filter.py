"""Tag subscription expressions: `*` (everything) or `TagA || TagB`."""

from __future__ import annotations

from dataclasses import dataclass

from dledgermq.errors import BadRequest
from dledgermq.store.consume_queue import tag_hash

MAX_EXPRESSION_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class TagFilter:
    """Filters first by the ConsumeQueue tag hash, then by the exact tag (hash collisions)."""

    tags: frozenset[str] | None  # None = match all
    hashes: frozenset[int]

    def matches_hash(self, hashed: int) -> bool:
        return self.tags is None or hashed in self.hashes

    def matches(self, tag: str | None) -> bool:
        return self.tags is None or (tag is not None and tag in self.tags)


MATCH_ALL = TagFilter(None, frozenset())


def parse_tag_expression(expression: str | None) -> TagFilter:
    if expression is None or expression.strip() in {"", "*"}:
        return MATCH_ALL
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise BadRequest(f"tag expression longer than {MAX_EXPRESSION_LENGTH} characters")
    tags = frozenset(part.strip() for part in expression.split("||"))
    # A lone surrogate (JSON allows `\ud800`) has no UTF-8 form to hash: not a tag.
    if "" in tags or not all(_has_utf8(tag) for tag in tags):
        raise BadRequest(f"malformed tag expression {expression!r}: use `*` or `A || B`")
    return TagFilter(tags, frozenset(tag_hash(t) for t in tags))


def _has_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
