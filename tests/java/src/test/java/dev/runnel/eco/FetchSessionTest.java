package dev.runnel.eco;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * Incremental fetch sessions (KIP-227) with the Java consumer, which uses them by default:
 * every record read exactly once and in order while partitions go quiet and wake up, topics
 * are subscribed and unsubscribed, and the broker restarts (its sessions are gone; the client
 * starts a new one). The broker's metrics show that incremental fetches were served.
 *
 * <p>Runnel only: it starts its own broker, to restart it on the same port and read its metrics.
 */
class FetchSessionTest {
  private static final Pattern LISTENER = Pattern.compile("Kafka listener on (\\S+):(\\d+) ");
  private static final Pattern ADMIN = Pattern.compile("admin on ([0-9.]+:\\d+)");

  /** A Runnel broker process of this test. */
  static final class Runnel {
    final Path data;
    Process process;
    String bootstrap;
    String admin;

    Runnel(Path data) {
      this.data = data;
    }

    void start(String listen) throws Exception {
      String bin = System.getenv().getOrDefault("RUNNEL_BIN", Broker.REPO.resolve("target/debug/runnel").toString());
      ProcessBuilder pb = new ProcessBuilder(bin, "broker", "--listen", listen, "--data-dir", data.resolve("data").toString(),
          "-o", "group.initial.rebalance.delay.ms=0");
      pb.environment().put("RUNNEL_ADMIN_LISTEN", "127.0.0.1:0");
      pb.redirectError(ProcessBuilder.Redirect.appendTo(data.resolve("stderr.log").toFile()));
      process = pb.start();
      InputStream stdout = process.getInputStream();
      BufferedReader out = new BufferedReader(new InputStreamReader(stdout, StandardCharsets.UTF_8));
      String line = out.readLine();
      Matcher m = LISTENER.matcher(line == null ? "" : line);
      Matcher a = ADMIN.matcher(line == null ? "" : line);
      if (!m.find() || !a.find()) {
        process.destroyForcibly();
        throw new IllegalStateException("unexpected startup line: " + line);
      }
      bootstrap = m.group(1) + ":" + m.group(2);
      admin = a.group(1);
      Broker.drain(out);
    }

    void stop() throws Exception {
      process.destroy();
      if (!process.waitFor(30, TimeUnit.SECONDS)) process.destroyForcibly();
    }

    /** A sample of /metrics, 0 when absent. */
    double metric(String name) throws Exception {
      HttpResponse<String> r = HttpClient.newHttpClient().send(
          HttpRequest.newBuilder(URI.create("http://" + admin + "/metrics")).build(), HttpResponse.BodyHandlers.ofString());
      for (String l : r.body().split("\n")) {
        if (l.startsWith(name + " ")) return Double.parseDouble(l.substring(name.length() + 1).trim());
      }
      return 0;
    }
  }

  /** What each partition should hold next: the next offset and the next value's sequence. */
  private final Map<TopicPartition, Integer> produced = new HashMap<>();
  private final Map<TopicPartition, Long> nextOffset = new HashMap<>();
  private final Map<TopicPartition, Integer> nextSeq = new HashMap<>();

  private void produce(KafkaProducer<String, String> p, String topic, int partition, int n) throws Exception {
    TopicPartition tp = new TopicPartition(topic, partition);
    int base = produced.getOrDefault(tp, 0);
    for (int i = 0; i < n; i++) {
      p.send(new ProducerRecord<>(topic, partition, null, tp + "#" + (base + i)));
    }
    p.flush();
    produced.put(tp, base + n);
  }

  /** Checks the order of what one poll returned: every record exactly once, in order. */
  private void check(Iterable<ConsumerRecord<String, String>> records, Set<TopicPartition> expect) {
    for (ConsumerRecord<String, String> r : records) {
      TopicPartition tp = new TopicPartition(r.topic(), r.partition());
      assertTrue(expect.contains(tp), "a record of " + tp + ", which is not subscribed now: " + r.value());
      long off = nextOffset.getOrDefault(tp, 0L);
      int seq = nextSeq.getOrDefault(tp, 0);
      assertEquals(off, r.offset(), "offset in " + tp);
      assertEquals(tp + "#" + seq, r.value(), "value in " + tp);
      nextOffset.put(tp, off + 1);
      nextSeq.put(tp, seq + 1);
    }
  }

  /**
   * Polls until every partition in {@code expect} has reached its produced count, checking
   * order; then commits, so that a rebalance (or a restart) resumes where this left off.
   */
  private void consumeAll(KafkaConsumer<String, String> c, Set<TopicPartition> expect) {
    long deadline = System.currentTimeMillis() + 60_000;
    while (System.currentTimeMillis() < deadline) {
      check(c.poll(Duration.ofMillis(200)), expect);
      boolean done = expect.stream().allMatch(tp -> nextSeq.getOrDefault(tp, 0).equals(produced.getOrDefault(tp, 0)));
      if (done) {
        c.commitSync();
        return;
      }
    }
    for (TopicPartition tp : expect) {
      assertEquals(produced.getOrDefault(tp, 0), nextSeq.getOrDefault(tp, 0), "records read of " + tp);
    }
  }

  /** Polls (checking what comes) until the consumer is assigned exactly {@code expect}. */
  private void awaitAssignment(KafkaConsumer<String, String> c, Set<TopicPartition> expect, Set<TopicPartition> allowed) {
    long deadline = System.currentTimeMillis() + 60_000;
    while (!c.assignment().equals(expect) && System.currentTimeMillis() < deadline) {
      check(c.poll(Duration.ofMillis(200)), allowed);
    }
    assertEquals(expect, c.assignment());
  }

  /** The partitions of {@code topic} numbered {@code from} (inclusive) to {@code to} (exclusive). */
  private static Set<TopicPartition> parts(String topic, int from, int to) {
    Set<TopicPartition> s = new java.util.HashSet<>();
    for (int i = from; i < to; i++) s.add(new TopicPartition(topic, i));
    return s;
  }

  private static Set<TopicPartition> union(Set<TopicPartition> a, Set<TopicPartition> b) {
    Set<TopicPartition> s = new java.util.HashSet<>(a);
    s.addAll(b);
    return s;
  }

  @Test
  void consumerReadsEverythingInOrderThroughSessions() throws Exception {
    Assumptions.assumeTrue(System.getenv().getOrDefault("RUNNEL_TEST_BROKER", "runnel").equals("runnel"), "Runnel only");
    Path dir = Files.createTempDirectory("runnel-java-sessions-");
    Runnel b = new Runnel(dir);
    b.start("127.0.0.1:0");
    try {
      String a = "sess-a";
      String bt = "sess-b";
      Properties admin = new Properties();
      admin.put("bootstrap.servers", b.bootstrap);
      try (Admin ad = Admin.create(admin)) {
        ad.createTopics(List.of(new NewTopic(a, 20, (short) 1), new NewTopic(bt, 6, (short) 1))).all().get();
      }
      Properties pp = new Properties();
      pp.put("bootstrap.servers", b.bootstrap);
      pp.put("key.serializer", StringSerializer.class.getName());
      pp.put("value.serializer", StringSerializer.class.getName());
      pp.put("reconnect.backoff.max.ms", "500");
      Properties cp = new Properties();
      cp.put("bootstrap.servers", b.bootstrap);
      cp.put("group.id", Broker.uniqueName("sessions"));
      cp.put("auto.offset.reset", "earliest");
      cp.put("enable.auto.commit", "false");
      cp.put("key.deserializer", StringDeserializer.class.getName());
      cp.put("value.deserializer", StringDeserializer.class.getName());
      cp.put("reconnect.backoff.max.ms", "500");
      // Small fetches, so that a partition's records take several of them.
      cp.put("max.partition.fetch.bytes", "2048");
      try (KafkaProducer<String, String> p = new KafkaProducer<>(pp);
           KafkaConsumer<String, String> c = new KafkaConsumer<>(cp)) {
        // 1. Topic a: a few partitions busy, the rest quiet.
        c.subscribe(List.of(a));
        for (int i = 0; i < 5; i++) produce(p, a, i, 200);
        consumeAll(c, parts(a, 0, 20));
        // 2. Quiet partitions wake up, busy ones go quiet.
        for (int i = 10; i < 15; i++) produce(p, a, i, 100);
        consumeAll(c, parts(a, 0, 20));
        for (int i = 0; i < 20; i += 7) produce(p, a, i, 30);
        consumeAll(c, parts(a, 0, 20));
        double incremental = b.metric("runnel_fetch_session_incremental_requests_total");
        assertTrue(incremental > 0, "incremental fetches served: " + incremental);
        assertTrue(b.metric("runnel_fetch_session_partitions") >= 20, "the session holds topic a's partitions");
        // 3. Topic b added.
        c.subscribe(List.of(a, bt));
        awaitAssignment(c, union(parts(a, 0, 20), parts(bt, 0, 6)), union(parts(a, 0, 20), parts(bt, 0, 6)));
        for (int i = 0; i < 6; i++) produce(p, bt, i, 50);
        produce(p, a, 3, 40);
        consumeAll(c, union(parts(a, 0, 20), parts(bt, 0, 6)));
        // 4. Topic a removed: its new records are not read.
        c.subscribe(List.of(bt));
        awaitAssignment(c, parts(bt, 0, 6), union(parts(a, 0, 20), parts(bt, 0, 6)));
        for (int i = 0; i < 6; i += 2) produce(p, bt, i, 40);
        consumeAll(c, parts(bt, 0, 6));
        produce(p, a, 1, 25);
        for (int i = 1; i < 6; i += 2) produce(p, bt, i, 40);
        consumeAll(c, parts(bt, 0, 6));
        assertTrue(b.metric("runnel_fetch_session_incremental_requests_total") > incremental, "more incremental fetches");
        // 5. The broker restarts on the same port: its sessions are gone, the consumer
        // starts a new one and reads on from where it was.
        String listen = b.bootstrap;
        b.stop();
        b.start(listen);
        for (int i = 0; i < 6; i++) produce(p, bt, i, 60);
        consumeAll(c, parts(bt, 0, 6));
        for (int i = 0; i < 6; i += 3) produce(p, bt, i, 10);
        consumeAll(c, parts(bt, 0, 6));
        double after = b.metric("runnel_fetch_session_incremental_requests_total");
        assertTrue(after > 0, "incremental fetches after the restart: " + after);
        assertTrue(b.metric("runnel_fetch_sessions_created_total") >= 1, "a session created after the restart");
      }
    } finally {
      b.stop();
      Broker.deleteTree(dir);
    }
  }
}
