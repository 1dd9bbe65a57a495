package dev.runnel.eco;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.Future;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;

/** The Java producer and consumer: defaults, codecs, headers, seek, offsetsForTimes, pause/resume, commits. */
class ProducerConsumerTest {

  /**
   * The producer's settings beside the defaults. Kafka's default producer is idempotent
   * ({@code enable.idempotence=true}, InitProducerId and sequence numbers): it runs with its
   * defaults on both brokers.
   */
  static Properties producerProps(Object... kv) {
    Properties p = Broker.props(kv);
    p.put("key.serializer", StringSerializer.class.getName());
    p.put("value.serializer", StringSerializer.class.getName());
    return p;
  }

  static Properties consumerProps(Object... kv) {
    Properties p = Broker.props(kv);
    p.put("key.deserializer", StringDeserializer.class.getName());
    p.put("value.deserializer", StringDeserializer.class.getName());
    p.putIfAbsent("auto.offset.reset", "earliest");
    return p;
  }

  static void createTopic(String topic, int partitions, Map<String, String> configs) throws Exception {
    try (Admin admin = Admin.create(Broker.props())) {
      admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1).configs(configs))).all().get();
    }
  }

  /** Polls until {@code n} records arrived (or fails after 30 s). */
  static <K, V> List<ConsumerRecord<K, V>> pollN(KafkaConsumer<K, V> c, int n) {
    List<ConsumerRecord<K, V>> out = new ArrayList<>();
    long deadline = System.currentTimeMillis() + 30_000;
    while (out.size() < n && System.currentTimeMillis() < deadline) {
      c.poll(Duration.ofMillis(200)).forEach(out::add);
    }
    assertEquals(n, out.size(), "records consumed");
    return out;
  }

  @Test
  void defaultProducerEveryCodecAndHeaders() throws Exception {
    String topic = Broker.uniqueName("java-codecs");
    createTopic(topic, 3, Map.of());
    String[] codecs = {"none", "gzip", "snappy", "lz4", "zstd"};
    int perCodec = 200;
    Map<String, String> sent = new HashMap<>();
    for (String codec : codecs) {
      try (KafkaProducer<String, String> p = new KafkaProducer<>(producerProps("compression.type", codec, "linger.ms", 5))) {
        List<Future<RecordMetadata>> acks = new ArrayList<>();
        for (int i = 0; i < perCodec; i++) {
          String k = codec + "-" + i;
          String v = "value " + i + " " + "x".repeat(i % 50);
          RecordHeaders h = new RecordHeaders();
          h.add("codec", codec.getBytes(StandardCharsets.UTF_8));
          acks.add(p.send(new ProducerRecord<>(topic, null, k, v, h)));
          sent.put(k, v);
        }
        for (Future<RecordMetadata> f : acks) assertTrue(f.get().offset() >= 0);
      }
    }
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps("group.id", Broker.uniqueName("g")))) {
      c.subscribe(List.of(topic));
      List<ConsumerRecord<String, String>> got = pollN(c, codecs.length * perCodec);
      Map<String, String> received = new HashMap<>();
      for (ConsumerRecord<String, String> r : got) {
        received.put(r.key(), r.value());
        String codec = r.key().substring(0, r.key().indexOf('-'));
        assertArrayEquals(codec.getBytes(StandardCharsets.UTF_8), r.headers().lastHeader("codec").value());
      }
      assertEquals(sent, received);
    }
  }

  @Test
  void seekOffsetsForTimesAndPauseResume() throws Exception {
    String topic = Broker.uniqueName("java-seek");
    createTopic(topic, 2, Map.of());
    TopicPartition p0 = new TopicPartition(topic, 0);
    TopicPartition p1 = new TopicPartition(topic, 1);
    long base = System.currentTimeMillis() - 100_000;
    try (KafkaProducer<String, String> p = new KafkaProducer<>(producerProps())) {
      for (int i = 0; i < 100; i++) {
        p.send(new ProducerRecord<>(topic, 0, base + i * 1000L, "k" + i, "v" + i));
        p.send(new ProducerRecord<>(topic, 1, base + i * 1000L, "k" + i, "w" + i));
      }
      p.flush();
    }
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps())) {
      c.assign(List.of(p0, p1));
      assertEquals(Map.of(p0, 100L, p1, 100L), c.endOffsets(List.of(p0, p1)));
      assertEquals(Map.of(p0, 0L, p1, 0L), c.beginningOffsets(List.of(p0, p1)));

      // offsetsForTimes: the first record at or after the timestamp; null past the end.
      Map<TopicPartition, OffsetAndTimestamp> ts = c.offsetsForTimes(Map.of(p0, base + 42_500L, p1, base + 1_000_000L));
      assertEquals(43L, ts.get(p0).offset());
      assertEquals(base + 43_000L, ts.get(p0).timestamp());
      assertNull(ts.get(p1));

      c.seek(p0, 90);
      c.seek(p1, 95);
      List<ConsumerRecord<String, String>> got = pollN(c, 15);
      assertEquals(10, got.stream().filter(r -> r.partition() == 0).count());
      assertEquals("v90", got.stream().filter(r -> r.partition() == 0).findFirst().get().value());
      assertEquals("w95", got.stream().filter(r -> r.partition() == 1).findFirst().get().value());

      // Pause p1: new records there are not returned until resume.
      c.pause(List.of(p1));
      assertEquals(Set.of(p1), c.paused());
      try (KafkaProducer<String, String> p = new KafkaProducer<>(producerProps())) {
        p.send(new ProducerRecord<>(topic, 0, "a", "after-0"));
        p.send(new ProducerRecord<>(topic, 1, "b", "after-1"));
        p.flush();
      }
      List<ConsumerRecord<String, String>> whilePaused = pollN(c, 1);
      assertEquals("after-0", whilePaused.get(0).value());
      for (int i = 0; i < 3; i++) assertTrue(c.poll(Duration.ofMillis(200)).isEmpty(), "paused partition returned records");
      c.resume(List.of(p1));
      assertEquals("after-1", pollN(c, 1).get(0).value());

      c.seekToBeginning(List.of(p1));
      assertEquals(0L, c.position(p1));
      c.seekToEnd(List.of(p1));
      assertEquals(101L, c.position(p1));
    }
  }

  @Test
  void manualAndAutoCommit() throws Exception {
    String topic = Broker.uniqueName("java-commit");
    createTopic(topic, 1, Map.of());
    TopicPartition tp = new TopicPartition(topic, 0);
    try (KafkaProducer<String, String> p = new KafkaProducer<>(producerProps())) {
      for (int i = 0; i < 50; i++) p.send(new ProducerRecord<>(topic, "k" + i, "v" + i));
      p.flush();
    }
    String manual = Broker.uniqueName("manual");
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps("group.id", manual, "enable.auto.commit", false))) {
      c.subscribe(List.of(topic));
      pollN(c, 50);
      c.commitSync(Map.of(tp, new OffsetAndMetadata(20, "twenty")));
      OffsetAndMetadata committed = c.committed(Set.of(tp)).get(tp);
      assertEquals(20, committed.offset());
      assertEquals("twenty", committed.metadata());
      c.commitSync(); // the position: 50
      assertEquals(50, c.committed(Set.of(tp)).get(tp).offset());
      c.commitAsync(Map.of(tp, new OffsetAndMetadata(30)), null);
      c.commitSync(Map.of(tp, new OffsetAndMetadata(30)));
    }
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps("group.id", manual))) {
      c.subscribe(List.of(topic));
      List<ConsumerRecord<String, String>> rest = pollN(c, 20);
      assertEquals(30, rest.get(0).offset(), "a new member starts at the committed offset");
    }

    String auto = Broker.uniqueName("auto");
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(
        "group.id", auto, "enable.auto.commit", true, "auto.commit.interval.ms", 100))) {
      c.subscribe(List.of(topic));
      pollN(c, 50);
      long deadline = System.currentTimeMillis() + 10_000;
      OffsetAndMetadata om = null;
      while (System.currentTimeMillis() < deadline) {
        c.poll(Duration.ofMillis(100));
        om = c.committed(Set.of(tp)).get(tp);
        if (om != null && om.offset() == 50) break;
      }
      assertNotNull(om);
      assertEquals(50, om.offset(), "auto commit reached the end");
    }
  }
}
