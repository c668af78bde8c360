"""The example topology: enrich orders with their total and route big ones.

Run it with ``eokafka run examples.orders:app`` (see the README's demo command).
"""

from __future__ import annotations

from typing import Any

import eokafka
from eokafka import serdes

app = eokafka.App("orders-app")


@app.processor("orders", key_serde=serdes.String(), value_serde=serdes.Json())
def enrich(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    order: dict[str, Any] = record.value
    total = round(sum(i["price"] * i["qty"] for i in order["items"]), 2)
    enriched = {**order, "total": total}
    ctx.send("orders-enriched", key=record.key, value=enriched, value_serde=serdes.Json())
    if total >= 100:
        ctx.send("orders-large", key=record.key, value=enriched, value_serde=serdes.Json())
