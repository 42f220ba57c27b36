"""Thin pykka shells: each owns one object, handles frozen-dataclass messages in one
`match`, only tells, and fails stop (DESIGN.md §5 rule 6)."""
