"""An app that reads one topic from two places: importing it raises TopologyError."""

from __future__ import annotations

import eokafka

app = eokafka.App("two-sources")
app.stream("orders").to("copies")


@app.processor("orders")
def audit(record: eokafka.Record, ctx: eokafka.ProcessorContext) -> None:
    ctx.send("audit", record.key, record.value)
