package io.eokafka.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.JoinWindows;
import org.apache.kafka.streams.kstream.Joined;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.StreamJoined;
import org.apache.kafka.streams.state.Stores;

/**
 * The Kafka Streams contender of eokafka's benchmarks: exactly-once (EOS v2) passthrough or
 * count by key over the benchmarks' input, one stream thread, RocksDB store, record cache off.
 *
 * <p>passthrough: every value is parsed as JSON and written back (--values json, the
 * default) or copied as bytes (--values bytes); the key is copied untouched. count: the
 * record key (a string) is counted in the RocksDB store "counts" and every input emits its
 * key's new count as JSON text; the value is deserialized by the value serde and not used,
 * as in benchmarks/apps/count_bench.py.
 *
 * <p>join (JSON values only): the orders of --input joined with the payments of --other of
 * the same key within --join-window-ms either way (JoinWindows.ofTimeDifferenceAndGrace, grace
 * --grace-ms), buffered in RocksDB window stores; each result is the order with the payment's
 * id added. asof: --other is read into a versioned RocksDB store "prices"
 * (Stores.persistentVersionedKeyValueStore, history --history-ms) and each record of --input
 * joins the version of its key valid at its timestamp; each result is the record with the
 * version's number and price added. These are benchmarks/apps/join_bench.py's two apps.
 *
 * <p>Stops cleanly on SIGTERM (commits and leaves the group); exits 1 if the streams client
 * fails.
 */
public final class KStreamsBench {
    private static final ObjectMapper MAPPER = new ObjectMapper();
    private static final Set<String> OPTIONS = Set.of(
            "bootstrap", "input", "output", "application-id", "state-dir", "mode", "values",
            "commit-interval-ms", "batch-size", "other", "join-window-ms", "grace-ms",
            "history-ms");

    private KStreamsBench() {}

    static Serde<JsonNode> jsonSerde() {
        Serializer<JsonNode> serializer = (topic, node) -> {
            if (node == null) {
                return null;
            }
            try {
                return MAPPER.writeValueAsBytes(node);
            } catch (IOException e) {
                throw new SerializationException("JSON encode for " + topic + " failed", e);
            }
        };
        Deserializer<JsonNode> deserializer = (topic, data) -> {
            if (data == null) {
                return null;
            }
            try {
                return MAPPER.readTree(data);
            } catch (IOException e) {
                throw new SerializationException("JSON decode from " + topic + " failed", e);
            }
        };
        return Serdes.serdeFrom(serializer, deserializer);
    }

    static <V> void passthrough(StreamsBuilder builder, String in, String out, Serde<V> values) {
        builder.stream(in, Consumed.with(Serdes.ByteArray(), values))
                .to(out, Produced.with(Serdes.ByteArray(), values));
    }

    static <V> void countByKey(StreamsBuilder builder, String in, String out, Serde<V> values) {
        builder.stream(in, Consumed.with(Serdes.String(), values))
                .groupByKey(Grouped.with(Serdes.String(), values))
                .count(Materialized.<String, Long>as(Stores.persistentKeyValueStore("counts"))
                        .withKeySerde(Serdes.String())
                        .withValueSerde(Serdes.Long())
                        .withCachingDisabled())
                .toStream()
                .mapValues(count -> Long.toString(count))
                .to(out, Produced.with(Serdes.String(), Serdes.String()));
    }

    static void streamJoin(StreamsBuilder builder, Map<String, String> opts, String in, String out) {
        Serde<JsonNode> json = jsonSerde();
        JoinWindows window = JoinWindows.ofTimeDifferenceAndGrace(
                Duration.ofMillis(Long.parseLong(opts.get("join-window-ms"))),
                Duration.ofMillis(Long.parseLong(opts.get("grace-ms"))));
        KStream<String, JsonNode> payments = builder.stream(
                opts.get("other"), Consumed.with(Serdes.String(), json));
        builder.stream(in, Consumed.with(Serdes.String(), json))
                .join(payments,
                        (order, payment) -> (JsonNode) ((ObjectNode) order.deepCopy())
                                .put("payment", payment.get("id").asLong()),
                        window,
                        StreamJoined.with(Serdes.String(), json, json).withStoreName("paid"))
                .to(out, Produced.with(Serdes.String(), json));
    }

    static void asOfJoin(StreamsBuilder builder, Map<String, String> opts, String in, String out) {
        Serde<JsonNode> json = jsonSerde();
        Duration history = Duration.ofMillis(Long.parseLong(opts.get("history-ms")));
        KTable<String, JsonNode> prices = builder.table(
                opts.get("other"),
                Consumed.with(Serdes.String(), json),
                Materialized.<String, JsonNode>as(Stores.persistentVersionedKeyValueStore("prices", history))
                        .withKeySerde(Serdes.String())
                        .withValueSerde(json));
        builder.stream(in, Consumed.with(Serdes.String(), json))
                .join(prices,
                        (record, version) -> (JsonNode) ((ObjectNode) record.deepCopy())
                                .put("version", version.get("version").asLong())
                                .set("price", version.get("price")),
                        Joined.with(Serdes.String(), json, json))
                .to(out, Produced.with(Serdes.String(), json));
    }

    static Map<String, String> parse(String[] args) {
        Map<String, String> opts = new HashMap<>(Map.of(
                "mode", "passthrough", "values", "json", "commit-interval-ms", "100",
                "batch-size", "1000"));
        for (int i = 0; i < args.length; i += 2) {
            String name = args[i].startsWith("--") ? args[i].substring(2) : "";
            if (!OPTIONS.contains(name) || i + 1 >= args.length) {
                throw new IllegalArgumentException("bad option " + args[i] + "; options: " + OPTIONS);
            }
            opts.put(name, args[i + 1]);
        }
        for (String required : new String[] {"bootstrap", "input", "output", "application-id", "state-dir"}) {
            if (!opts.containsKey(required)) {
                throw new IllegalArgumentException("--" + required + " is required");
            }
        }
        return opts;
    }

    static Properties config(Map<String, String> opts) {
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, opts.get("application-id"));
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, opts.get("bootstrap"));
        props.put(StreamsConfig.STATE_DIR_CONFIG, opts.get("state-dir"));
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, opts.get("commit-interval-ms"));
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, "0");
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, "1");
        // The batch size and producer buffering of the Python contenders (eokafka's defaults).
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.MAX_POLL_RECORDS_CONFIG), opts.get("batch-size"));
        props.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), "5");
        return props;
    }

    public static void main(String[] args) throws InterruptedException {
        Map<String, String> opts = parse(args);
        String in = opts.get("input");
        String out = opts.get("output");
        boolean json = switch (opts.get("values")) {
            case "json" -> true;
            case "bytes" -> false;
            default -> throw new IllegalArgumentException("--values must be json or bytes");
        };
        StreamsBuilder builder = new StreamsBuilder();
        switch (opts.get("mode")) {
            case "passthrough" -> {
                if (json) passthrough(builder, in, out, jsonSerde());
                else passthrough(builder, in, out, Serdes.ByteArray());
            }
            case "count" -> {
                if (json) countByKey(builder, in, out, jsonSerde());
                else countByKey(builder, in, out, Serdes.ByteArray());
            }
            case "join", "asof" -> {
                if (!json) throw new IllegalArgumentException("--mode join and asof need --values json");
                boolean join = opts.get("mode").equals("join");
                String[] needed = join
                        ? new String[] {"other", "join-window-ms", "grace-ms"}
                        : new String[] {"other", "history-ms"};
                for (String option : needed) {
                    if (!opts.containsKey(option)) throw new IllegalArgumentException("--" + option + " is required");
                }
                if (join) streamJoin(builder, opts, in, out);
                else asOfJoin(builder, opts, in, out);
            }
            default -> throw new IllegalArgumentException("--mode must be passthrough, count, join or asof");
        }
        Topology topology = builder.build();
        KafkaStreams streams = new KafkaStreams(topology, config(opts));
        CountDownLatch stopped = new CountDownLatch(1);
        AtomicBoolean failed = new AtomicBoolean(false);
        streams.setStateListener((now, before) -> {
            System.out.println("kstreams state " + before + " -> " + now);
            if (now == KafkaStreams.State.ERROR) {
                failed.set(true);
                stopped.countDown();
            }
        });
        streams.setUncaughtExceptionHandler(e -> {
            e.printStackTrace();
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(30));
            stopped.countDown();
        }, "kstreams-bench-shutdown"));
        System.out.println("kstreams " + opts + "\n" + topology.describe());
        streams.start();
        stopped.await();
        if (failed.get()) {
            streams.close(Duration.ofSeconds(10));
            System.exit(1);
        }
    }
}
