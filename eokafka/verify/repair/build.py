"""Build a repair plan from a check's findings (the rules are in ``plan.py``'s docstring)."""

from __future__ import annotations

from eokafka.verify import Checked
from eokafka.verify.repair.plan import Capabilities, Item, Plan


def build_plan(
    checked: Checked, can: Capabilities, delete_extra: bool, delete_unkeyed: bool
) -> Plan:
    f = checked.findings
    src, dst = checked.source.where, checked.destination.where
    plan = Plan(checked.report.destination)
    items = plan.items
    for id_, loc in f.source_repeated.items():
        items.append(Item("leave", "source-repeated", id_, source_where=src(loc),
                          note="the id is repeated in the source: which record is right is "
                          "unknown, so its copies are left as they are"))
    for id_, loc in f.missing:
        if id_ not in f.source_repeated:
            items.append(Item("add", "missing", id_, source_where=src(loc), source_loc=loc))
    for id_, (source_loc, copies) in f.copies.items():
        if id_ in f.source_repeated:
            continue
        keep = next((c for c in copies if c.ok), copies[0])
        for c in copies:
            if c is keep:
                continue
            item = Item("remove", "duplicate", id_, dst(c.loc), src(source_loc), loc=c.loc)
            if not can.remove:
                item.leave(can.why_not)
            items.append(item)
        if not keep.ok:
            item = Item("fix", "differing", id_, dst(keep.loc), src(source_loc), loc=keep.loc,
                        source_loc=source_loc)
            if not can.fix:
                item.leave(can.why_not)
            items.append(item)
    for id_, loc in f.extra:
        item = Item("remove", "extra", id_, dst(loc), loc=loc)
        if not delete_extra:
            item.leave("not in the source (--delete-extra removes it)")
        elif not can.remove:
            item.leave(can.why_not)
        items.append(item)
    for loc, problem in f.unreadable:
        item = Item("remove", "unkeyed", None, dst(loc), loc=loc, note=problem)
        if not delete_unkeyed:
            item.leave(f"{problem}: no readable id (--delete-unkeyed removes it)")
        elif not can.remove:
            item.leave(can.why_not)
        items.append(item)
    for loc, problem in f.source_unreadable:
        items.append(Item("leave", "source-unkeyed", None, source_where=src(loc),
                          note=f"{problem}: a source record without a readable id can't be "
                          "matched (--allow-unkeyed accepts it)"))
    return plan
