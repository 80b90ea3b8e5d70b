"""Stats: the admin overview's figures and the admin list, from a day index the lifecycle keeps exact.

This package owns the day index (``index``: one Table partition per intake day, a row per request and
summary shards, updated in one entity-group transaction after each lifecycle write, repaired by the
sweeper), the overview built from it (``overview``: counts per status per day, time to invite, failures by
code with their documented cause and fix (``causes``), the write budget, what needs attention), and the
admin list's filters and bounded paging over the day partitions (``listing``). The lifecycle knows the index
only as its ``RecordIndex`` protocol; ``shared.services`` wires it in. docs/operations.md, "The admin
overview", says what is exact and when.
"""

from __future__ import annotations

from .index import TableDayIndex, address_hash, row_of
from .listing import ListQuery, list_ids, parse_list
from .overview import Overview, parse_days

__all__ = ["ListQuery", "Overview", "TableDayIndex", "address_hash", "list_ids", "parse_days", "parse_list", "row_of"]
