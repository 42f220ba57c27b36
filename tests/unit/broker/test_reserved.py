"""The one list of properties the broker interprets, and what a client may set of them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dledgermq
from dledgermq.broker import reserved
from dledgermq.broker.reserved import (
    BROKER_ONLY,
    CLIENT_SET,
    FROM_FIELDS,
    INTERPRETED,
    check_user_properties,
    parse_decimal,
)
from dledgermq.errors import InvalidMessage, ReservedProperty

PACKAGE = Path(dledgermq.__file__).parent
# Names bound to property-name strings anywhere in the package (PROPERTY_X = "X", UNIQ_KEY…).
CONSTANTS = {
    name: value
    for name, value in vars(reserved).items()
    if name.startswith("PROPERTY_") and isinstance(value, str)
}


def test_the_sets_partition_the_interpreted_names() -> None:
    assert not BROKER_ONLY & FROM_FIELDS
    assert not BROKER_ONLY & CLIENT_SET
    assert not FROM_FIELDS & CLIENT_SET
    assert set(CONSTANTS.values()) == INTERPRETED


def _property_reads(tree: ast.AST) -> list[tuple[int, ast.expr]]:
    """The key of every `<x>.properties.get(key)`, `properties.get(key)`,
    `properties[key]` and `key in properties` in a module."""

    def is_properties(node: ast.expr) -> bool:
        name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
        return name in {"properties", "props"}

    reads = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"get", "pop", "setdefault"}
            and is_properties(node.func.value)
            and node.args
        ):
            reads.append((node.lineno, node.args[0]))
        elif isinstance(node, ast.Subscript) and is_properties(node.value):
            reads.append((node.lineno, node.slice))
        elif (
            isinstance(node, ast.Compare)
            and isinstance(node.ops[0], ast.In | ast.NotIn)
            and is_properties(node.comparators[0])
        ):
            reads.append((node.lineno, node.left))
    return reads


def _module_constants(tree: ast.Module) -> dict[str, str]:
    return {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name) and isinstance(node.value.value, str)
    }


def test_every_property_the_broker_reads_is_in_the_list() -> None:
    """A property read by name that is not in `broker/reserved.py` is one a client can set
    to steer the broker without the edge knowing: fail until it is listed (and decided)."""
    unlisted = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "client" in path.relative_to(PACKAGE).parts or path.name.startswith("cli"):
            continue  # The client reads what it is given; it is not the broker.
        tree = ast.parse(path.read_text(), str(path))
        local = _module_constants(tree)
        for line, key in _property_reads(tree):
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                name = key.value
            elif isinstance(key, ast.Name) and (key.id in CONSTANTS or key.id in local):
                name = CONSTANTS.get(key.id) or local[key.id]
            else:
                continue  # Iteration over all properties (copying, filtering): no name.
            if name not in INTERPRETED:
                unlisted.append(f"{path.relative_to(PACKAGE)}:{line} reads {name!r}")
    assert unlisted == []


def test_the_scan_finds_reads_in_each_form() -> None:
    """The scanner above must not pass by finding nothing."""
    source = (
        "a = record.properties.get('X')\nb = properties['Y']\nc = 'Z' in properties\n"
        "d = props.get(PROPERTY_REAL_TOPIC)\n"
    )
    reads = _property_reads(ast.parse(source))
    keys = [getattr(k, "value", getattr(k, "id", None)) for _, k in reads]
    assert keys == ["X", "Y", "Z", "PROPERTY_REAL_TOPIC"]


@pytest.mark.parametrize("name", sorted(BROKER_ONLY | FROM_FIELDS))
def test_reserved_names_are_refused(name: str) -> None:
    with pytest.raises(ReservedProperty) as refused:
        check_user_properties({"ok": "1", name: "v"})
    assert refused.value.details == {"property": name}


def test_client_set_names_are_checked_not_refused() -> None:
    check_user_properties({"UNIQ_KEY": "AB_cd-09", "CHECK_IMMUNITY_TIME_IN_SECONDS": "60"})
    for bad in ({"UNIQ_KEY": "a b"}, {"CHECK_IMMUNITY_TIME_IN_SECONDS": "86401"}):
        with pytest.raises(InvalidMessage):
            check_user_properties(bad)
    check_user_properties({"real_topic": "lower case is the user's own", "Any": ""})


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("-12", -12), ("9223372036854775807", 2**63 - 1), ("\u0660", None), ("²", None),
     (" 1", None), ("1 ", None), ("1_0", None), ("+1", None), ("", None), ("1" * 20, None),
     (None, None), (5, None)],
)
def test_parse_decimal_takes_ascii_digits_only(text: object, value: int | None) -> None:
    assert parse_decimal(text) == value
