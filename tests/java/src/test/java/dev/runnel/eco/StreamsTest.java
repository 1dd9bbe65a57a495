package dev.runnel.eco;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.junit.jupiter.api.Test;

/**
 * Kafka Streams word count: a repartition topic (groupBy a new key), a state store backed by a
 * compacted changelog topic, at_least_once and exactly_once_v2 (transactions: a transactional
 * producer per thread, offsets committed in the transaction, read_committed consumers). The
 * output equals the expected counts, and a restart with the local state wiped restores the
 * store from the changelog.
 */
class StreamsTest {

  static final String[] FIRST = {"the log is the product", "the broker stores the log", "a log of logs"};
  static final String[] SECOND = {"the log again", "logs and jobs"};

  static Map<String, Long> expected(String[]... batches) {
    Map<String, Long> m = new HashMap<>();
    for (String[] b : batches)
      for (String line : b) for (String w : line.split(" ")) m.merge(w, 1L, Long::sum);
    return m;
  }

  static KafkaStreams start(String app, String in, String out, Path stateDir, AtomicLong restored, String guarantee) {
    StreamsBuilder b = new StreamsBuilder();
    b.<String, String>stream(in)
        .flatMapValues(v -> Arrays.asList(v.split(" ")))
        .groupBy((k, w) -> w) // a new key: through a repartition topic
        .count(Materialized.as("word-counts")) // a store with a compacted changelog
        .toStream()
        .to(out, Produced.with(Serdes.String(), Serdes.Long()));
    Properties p = Broker.props(
        StreamsConfig.APPLICATION_ID_CONFIG, app,
        StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee,
        StreamsConfig.STATE_DIR_CONFIG, stateDir.toString(),
        StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200,
        StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0,
        StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class.getName(),
        StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class.getName(),
        StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest",
        // Streams does not leave the group on close: the restarted instance's rebalance waits
        // for the old member's session to time out, so keep it short.
        StreamsConfig.consumerPrefix("session.timeout.ms"), 6000,
        StreamsConfig.consumerPrefix("heartbeat.interval.ms"), 1000);
    KafkaStreams s = new KafkaStreams(b.build(), p);
    s.setGlobalStateRestoreListener(new StateRestoreListener() {
      @Override public void onRestoreStart(TopicPartition tp, String store, long start, long end) { }
      @Override public void onBatchRestored(TopicPartition tp, String store, long end, long n) { }
      @Override public void onRestoreEnd(TopicPartition tp, String store, long total) {
        restored.addAndGet(total);
      }
    });
    s.start();
    return s;
  }

  static void produce(String topic, String[] lines) {
    try (KafkaProducer<String, String> p = new KafkaProducer<>(ProducerConsumerTest.producerProps())) {
      for (int i = 0; i < lines.length; i++) p.send(new ProducerRecord<>(topic, "line" + i, lines[i]));
      p.flush();
    }
  }

  /** Reads the output topic into {@code latest} until the latest count of every word equals {@code want}. */
  static void awaitCounts(KafkaConsumer<String, Long> c, Map<String, Long> latest, Map<String, Long> want) {
    long deadline = System.currentTimeMillis() + 60_000;
    while (!latest.equals(want) && System.currentTimeMillis() < deadline) {
      for (ConsumerRecord<String, Long> r : c.poll(Duration.ofMillis(200))) latest.put(r.key(), r.value());
    }
    assertEquals(want, latest);
  }

  @Test
  void wordCountWithRepartitionAndChangelogSurvivesRestart() throws Exception {
    wordCount(StreamsConfig.AT_LEAST_ONCE);
  }

  @Test
  void exactlyOnceV2WordCountSurvivesRestart() throws Exception {
    wordCount(StreamsConfig.EXACTLY_ONCE_V2);
  }

  void wordCount(String guarantee) throws Exception {
    String app = Broker.uniqueName("wordcount");
    String in = app + "-in";
    String out = app + "-out";
    ProducerConsumerTest.createTopic(in, 2, Map.of());
    ProducerConsumerTest.createTopic(out, 1, Map.of());
    Path state = Files.createTempDirectory("streams-state");
    Properties cp = ProducerConsumerTest.consumerProps();
    cp.put("value.deserializer", LongDeserializer.class.getName());
    // Under exactly_once_v2 the output is written in transactions: read only committed ones.
    cp.put("isolation.level", guarantee.equals(StreamsConfig.AT_LEAST_ONCE) ? "read_uncommitted" : "read_committed");
    try (KafkaConsumer<String, Long> c = new KafkaConsumer<>(cp)) {
      c.assign(List.of(new TopicPartition(out, 0)));
      AtomicLong restored = new AtomicLong();
      Map<String, Long> latest = new HashMap<>();
      KafkaStreams s = start(app, in, out, state, restored, guarantee);
      try {
        produce(in, FIRST);
        awaitCounts(c, latest, expected(FIRST));
      } finally {
        s.close(Duration.ofSeconds(30));
      }

      // The internal topics Streams created: the repartition topic and the compacted changelog.
      String changelog = app + "-word-counts-changelog";
      String repartition = app + "-word-counts-repartition";
      try (Admin admin = Admin.create(Broker.props())) {
        Set<String> topics = admin.listTopics().names().get();
        assertTrue(topics.containsAll(Set.of(changelog, repartition)),
            "internal topics: " + topics.stream().filter(t -> t.startsWith(app)).collect(Collectors.toList()));
        ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, changelog);
        Config cfg = admin.describeConfigs(List.of(res)).all().get().get(res);
        assertEquals("compact", cfg.get("cleanup.policy").value());
      }

      // Restart with the local state wiped: the store comes back from the changelog, so the
      // counts go on from where they were.
      Broker.deleteTree(state);
      Files.createDirectories(state);
      s = start(app, in, out, state, restored, guarantee);
      try {
        produce(in, SECOND);
        awaitCounts(c, latest, expected(FIRST, SECOND));
        assertTrue(restored.get() > 0, "the store was restored from the changelog");
      } finally {
        s.close(Duration.ofSeconds(30));
        Broker.deleteTree(state);
      }
    }
  }
}
