"""The run table's partitions: one list of them (shared/adapters/tables.py), each owned by one
adapter, none meeting another's or a run record's (an export name's)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from shared.adapters import tables
from shared.core.definitions import is_export_name

ADAPTERS = Path(__file__).resolve().parent.parent / "shared" / "adapters"


def test_no_partition_meets_another_or_an_export_name() -> None:
    assert tables.partition_problems() == []
    for name in tables.PARTITIONS:
        assert not is_export_name(name)


def test_a_partition_that_could_meet_another_is_named() -> None:
    problems = tables.partition_problems({"~split-": "a", "~split-x": "b", "runs": "c"})
    assert problems == ["runs: does not start with '~'", "~split-x: starts with ~split- (a)"]


def test_each_owner_is_an_adapter_and_names_its_partitions_only_through_the_list() -> None:
    for owner in set(tables.PARTITIONS.values()):
        importlib.import_module(owner)
    for path in ADAPTERS.glob("*.py"):
        if path.name == "tables.py":
            continue
        literals = re.findall(r"""["'](~[a-z][a-z-]*)""", path.read_text("utf-8"))
        assert literals == [], f"{path.name} spells a partition itself: {literals}"
