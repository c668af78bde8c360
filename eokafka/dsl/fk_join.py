"""Foreign-key table-table joins: ``table.join(other, fn, foreign_key=fk, name=)``.

Each row of the left table joins the row of the right table whose key ``fk(value)`` names;
the tables need not be co-partitioned nor share key types. As in Kafka Streams (KIP-213),
the left side subscribes each row to its foreign key through Kafka, and the right side
answers:

* **Left update** (left table's processor): store ``<name>-registered`` keeps each left key's
  [foreign key, value hash]. A changed foreign key unsubscribes from the old one; a row with
  a foreign key sends a subscription ``[left key, hash]`` keyed by the foreign key to
  ``<app id>-<name>-subscription-repartition`` (partitioned like the right table). A deleted
  row, or one whose foreign key is None, gives its result at once: a delete, or
  ``fn(value, None)`` for ``left_join``.
* **Subscription** (its own processor, on the right table's tasks): store
  ``<name>-subscriptions`` keeps per foreign key the [left key, hash, time] of its subscribers
  (one entry per foreign key, the equivalent of a prefix scan over (foreign key, left key));
  a subscription is answered at once with the right row as it is.
* **Right update** (right table's processor): answered to every left key subscribed to it.
* **Response** ``[hash, right value]`` keyed by the left key, to
  ``<app id>-<name>-response-repartition`` (partitioned like the left table): its processor
  drops it unless the hash is the left row's current one (the row changed since: a newer
  response follows), else sends ``fn(value, right value)``, or for a missing right row a
  delete (``join``) or ``fn(value, None)`` (``left_join``).

Every hop is a topic written in the transaction and every store is changelogged, so the join
is exactly once like the rest. The internal topics carry JSON: left keys and right values as
the tables' stores keep them. A result carries the later of the two rows' times (as Kafka
Streams): a subscription carries the left row's, kept with it in ``<name>-subscriptions``,
and store ``<name>-times`` keeps each right row's. A result sent at once (a deleted row, no
foreign key) carries the left update's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from eokafka.dsl.graph import Emit, Root, Wrap, claim_store, emit_at, record_time, sink
from eokafka.dsl.pipe import Pipe, TablePipe
from eokafka.dsl.table_ops import TableJoinKind, join_by_key, kept
from eokafka.errors import TopologyError
from eokafka.serdes import Json, Serde

ForeignKeyKind = Literal["inner", "left"]
ForeignKey = Callable[[Any], Any]  # a left value -> the right key it names
Send = Callable[[Any, Any, Any], None]  # (key, value, ctx)
Respond = Callable[[Any, Any, int, "int | None", Any], None]  # (key, value, time, other's, ctx)


def value_hash(raw: bytes) -> str:
    """What a response is checked against: the hash of the left row it answers (hashlib is
    imported here: an app without a foreign-key join never needs it)."""
    import hashlib

    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def _sender(topic: str, key_serde: Serde, root: Root) -> Send:
    """A send to ``topic`` in the transaction (JSON values), at the time ``root`` is at."""
    return sink(topic, key_serde, Json(), root)(lambda key, value, ctx: None)


def _answer(topic: str, key_serde: Serde, root: Root) -> Respond:
    """A response to ``topic``, at the later of the two sides' times (as Kafka Streams)."""
    send = _sender(topic, key_serde, root)

    def respond(key: Any, value: Any, at: int, other_at: int | None, ctx: Any) -> None:
        emit_at(root, at if other_at is None or other_at < at else other_at, send, key, value, ctx)

    return respond


def _pair(value: Any, topic: str) -> tuple[Any, Any]:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"{topic}: a foreign-key join record is [a, b], not {value!r}")
    return value[0], value[1]


class ForeignKeyJoin:
    """One foreign-key join: its names, stores and topics; each side's operator."""

    def __init__(
        self,
        left: TablePipe,
        right: TablePipe,
        joiner: Callable[[Any, Any], Any],
        foreign_key: Callable[[Any], Any],
        name: str,
        kind: ForeignKeyKind,
    ) -> None:
        app = left.pipe.root.app
        assert left.name is not None and right.name is not None
        self.left, self.right = left, right
        self.left_store, self.right_store = left.name, right.name
        self.joiner, self.foreign_key, self.kind = joiner, foreign_key, kind
        what = f"foreign-key join {name!r}"
        self.registered = claim_store(app, f"{name}-registered", what)
        self.subscriptions = claim_store(app, f"{name}-subscriptions", what)
        self.times = claim_store(app, f"{name}-times", what)
        prefix = app.application_id
        self.subscription_topic = f"{prefix}-{name}-subscription-repartition"
        self.response_topic = f"{prefix}-{name}-response-repartition"
        for topic in (self.subscription_topic, self.response_topic):
            if topic in app.topology.internal_topics:
                raise TopologyError(f"{what}: topic {topic!r} is already declared; rename it")
        self.label = f"{'left_join' if kind == 'left' else 'join'}({left.name}, {right.name}"
        self.label += f", foreign key, {name})"

    def subscribing(self, root: Root) -> Wrap:
        """The left table's side: (un)subscribe on every update; results that need no answer."""
        subscribe = _sender(self.subscription_topic, self.right.key_serde, root)
        registered, left_store, foreign_key = self.registered, self.left_store, self.foreign_key
        joiner, left = self.joiner, self.kind == "left"

        def wrap(nxt: Emit) -> Emit:
            def emit(key: Any, value: Any, ctx: Any) -> None:
                store = ctx.store(registered)
                old = store.get(key)
                fk = None if value is None else foreign_key(value)
                if old is not None and old[0] != fk:
                    subscribe(old[0], [key, None], ctx)
                if fk is None:
                    store.delete(key)
                    nxt(key, joiner(value, None) if left and value is not None else None, ctx)
                    return
                digest = value_hash(ctx.store(left_store).value_serde.serialize(value))
                store.put(key, [fk, digest])
                subscribe(fk, [key, digest], ctx)

            return emit

        return wrap

    def receiving(self, root: Root) -> Wrap:
        """The subscription topic's processor: keep who subscribes, answer a subscription."""
        respond = _answer(self.response_topic, self.left.key_serde, root)
        subscriptions, right_store, times = self.subscriptions, self.right_store, self.times
        topic = self.subscription_topic

        def wrap(nxt: Emit) -> Emit:
            def emit(fk: Any, value: Any, ctx: Any) -> None:
                key, digest = _pair(value, topic)
                at = record_time(root, topic)
                store = ctx.store(subscriptions)
                entries = [e for e in store.get(fk) or () if e[0] != key]
                if digest is not None:
                    entries.append([key, digest, at])
                if entries:
                    store.put(fk, entries)
                else:
                    store.delete(fk)
                if digest is not None:
                    other = ctx.store(right_store).get(fk)
                    other_at = ctx.store(times).get(fk) if other is not None else None
                    respond(key, [digest, other], at, other_at, ctx)

            return emit

        return wrap

    def fanning_out(self, root: Root) -> Wrap:
        """The right table's side: each update answered to every left key subscribed to it,
        its time kept in ``<name>-times`` for the answers to later subscriptions."""
        respond = _answer(self.response_topic, self.left.key_serde, root)
        subscriptions, times = self.subscriptions, self.times
        what = f"the right table of {self.label}"

        def wrap(nxt: Emit) -> Emit:
            def emit(fk: Any, value: Any, ctx: Any) -> None:
                at = record_time(root, what)
                if value is None:
                    ctx.store(times).delete(fk)
                else:
                    ctx.store(times).put(fk, at)
                for key, digest, left_at in ctx.store(subscriptions).get(fk) or ():
                    respond(key, [digest, value], at, left_at, ctx)

            return emit

        return wrap

    def answering(self, nxt: Emit) -> Emit:
        """The response topic's processor: a response for the left row as it is now joins."""
        registered, left_store, joiner = self.registered, self.left_store, self.joiner
        inner, topic = self.kind == "inner", self.response_topic

        def emit(key: Any, value: Any, ctx: Any) -> None:
            digest, other = _pair(value, topic)
            now = ctx.store(registered).get(key)
            if now is None or now[1] != digest:
                return  # an answer to an older row (or a deleted one): a newer one follows
            row = ctx.store(left_store).get(key)
            if row is None:
                return
            nxt(key, None if inner and other is None else joiner(row, other), ctx)

        return emit


def join_tables(
    left: TablePipe,
    right: TablePipe,
    joiner: Callable[[Any, Any], Any],
    name: str | None,
    kind: TableJoinKind,
    foreign_key: ForeignKey | None,
) -> Pipe:
    """A table-table join: by key (``table_ops``), or by ``foreign_key`` if given."""
    if foreign_key is None:
        return join_by_key(left, right, joiner, name, kind)
    if kind == "outer":
        raise TopologyError(
            "table outer_join takes no foreign_key=: a foreign-key join is join or left_join "
            "(every row of the left table, joined by the key its value names)"
        )
    return join_by_foreign_key(left, right, joiner, foreign_key, name, kind)


def join_by_foreign_key(
    left: TablePipe,
    right: TablePipe,
    joiner: Callable[[Any, Any], Any],
    foreign_key: ForeignKey,
    name: str | None,
    kind: ForeignKeyKind,
) -> Pipe:
    """The foreign-key join of ``left`` with ``right``, kept in store ``name``."""
    method = "left_join" if kind == "left" else "join"
    if not callable(foreign_key):
        raise TopologyError(
            f"table {method}(foreign_key={foreign_key!r}): foreign_key= must be a function "
            "of the left value giving the right table's key, e.g. lambda v: v['customer']"
        )
    if name is None:
        raise TopologyError(
            f"table {method} by foreign key needs name=: the store of the joined table"
        )
    for table in (left, right):
        table.check_stored(f"table {method} by foreign key")
        if table.history_ms is not None:
            raise TopologyError(
                f"versioned table {table.name!r} joins streams (as of their time) only; "
                "join its unversioned table by foreign key"
            )
    join = ForeignKeyJoin(left, right, joiner, foreign_key, name, kind)
    app = left.pipe.root.app
    like_left, like_right = left.pipe.root.like, right.pipe.root.like
    app.topology.add_internal_topic(join.subscription_topic, partitions_like=like_right)
    app.topology.add_internal_topic(join.response_topic, partitions_like=like_left)
    asked = Root(
        app,
        join.subscription_topic,
        "foreign-key subscriptions",
        right.key_serde,
        Json(),
        like=like_right,
    )
    answers = Root(
        app,
        join.response_topic,
        "foreign-key responses",
        left.key_serde,
        Json(),
        like=like_left,
    )
    left.pipe.add_store(join.registered)
    right.pipe.add_store(join.subscriptions)
    right.pipe.add_store(join.times)
    for store in (right.name, join.subscriptions, join.times):
        asked.add_store(store or "")
    for store in (left.name, join.registered):
        answers.add_store(store or "")
    asked.add(asked.node, f"{join.label} subscribe", join.receiving(asked))
    right.pipe.then_each(f"{join.label} answer", join.fanning_out)
    lefts = left.pipe.then_each(join.label, join.subscribing)
    answered = Pipe(answers, answers.add(answers.node, join.label, join.answering))
    return kept(lefts.joined(answered), name)
