package dev.runnel.eco;

import static dev.runnel.eco.Broker.tool;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * Kafka's command-line tools, run exactly as documented for Kafka (bin/NAME.sh → the same main
 * class through scripts/apache-kafka tool): kafka-topics, console producer and consumer with
 * keys and headers, kafka-consumer-groups, kafka-configs, kafka-get-offsets,
 * kafka-delete-records, the producer and consumer perf tests, and the verifiable producer and
 * consumer (no acknowledged message lost).
 */
class ToolsTest {
  static final String BS = "--bootstrap-server";

  static String[] args(Object... parts) {
    List<String> out = new ArrayList<>();
    for (Object p : parts) {
      if (p instanceof List<?> l) l.forEach(x -> out.add(x.toString()));
      else out.add(p.toString());
    }
    return out.toArray(String[]::new);
  }

  static Broker.ToolResult produceLines(String topic, String lines, Object... extra) throws Exception {
    return tool(lines, Duration.ofSeconds(60), Map.of(), "kafka-console-producer",
        args(BS, Broker.bootstrap(), "--topic", topic, List.of(extra))).ok();
  }

  @Test
  void topicsCommand() throws Exception {
    String topic = Broker.uniqueName("tools-topics");
    String bs = Broker.bootstrap();
    assertTrue(tool("kafka-topics", BS, bs, "--create", "--topic", topic, "--partitions", "3",
        "--replication-factor", "1", "--config", "retention.ms=3600000").ok().stdout().contains("Created topic " + topic));
    assertTrue(tool("kafka-topics", BS, bs, "--list").ok().stdout().lines().anyMatch(topic::equals));
    String describe = tool("kafka-topics", BS, bs, "--describe", "--topic", topic).ok().stdout();
    assertTrue(describe.contains("PartitionCount: 3"), describe);
    assertTrue(describe.contains("retention.ms=3600000"), describe);
    tool("kafka-topics", BS, bs, "--alter", "--topic", topic, "--partitions", "5").ok();
    assertTrue(tool("kafka-topics", BS, bs, "--describe", "--topic", topic).ok().stdout().contains("PartitionCount: 5"));
    Broker.ToolResult dup = tool("kafka-topics", BS, bs, "--create", "--topic", topic, "--partitions", "1");
    assertTrue((dup.stdout() + dup.stderr()).contains("already exists"), dup.stdout() + dup.stderr());
    tool("kafka-topics", BS, bs, "--delete", "--topic", topic).ok();
    long deadline = System.currentTimeMillis() + 15_000;
    while (System.currentTimeMillis() < deadline
        && tool("kafka-topics", BS, bs, "--list").ok().stdout().lines().anyMatch(topic::equals)) Thread.sleep(200);
    assertFalse(tool("kafka-topics", BS, bs, "--list").ok().stdout().lines().anyMatch(topic::equals));
  }

  @Test
  void consoleProducerConsumerWithKeysAndHeadersThenGroupsCommand() throws Exception {
    String topic = Broker.uniqueName("tools-console");
    String group = Broker.uniqueName("console-group");
    String bs = Broker.bootstrap();
    tool("kafka-topics", BS, bs, "--create", "--topic", topic, "--partitions", "2").ok();
    // headers, tab, key, tab, value (the documented parse.headers / parse.key format)
    StringBuilder in = new StringBuilder();
    for (int i = 0; i < 10; i++) in.append("src:cli,n:").append(i).append('\t').append("k").append(i).append('\t').append("hello ").append(i).append('\n');
    produceLines(topic, in.toString(), "--reader-property", "parse.key=true", "--reader-property", "parse.headers=true");

    Broker.ToolResult consumed = tool(null, Duration.ofSeconds(60), Map.of(), "kafka-console-consumer",
        BS, bs, "--topic", topic, "--group", group, "--from-beginning", "--max-messages", "10",
        "--formatter-property", "print.key=true", "--formatter-property", "print.headers=true",
        "--formatter-property", "key.separator=|").ok();
    List<String> lines = consumed.stdout().lines().sorted().toList();
    assertEquals(10, lines.size(), consumed.stdout());
    assertTrue(lines.contains("src:cli,n:3|k3|hello 3"), lines.toString());

    String list = tool("kafka-consumer-groups", BS, bs, "--list").ok().stdout();
    assertTrue(list.lines().anyMatch(group::equals), list);
    String describe = tool("kafka-consumer-groups", BS, bs, "--describe", "--group", group).ok().stdout();
    // both partitions committed at their ends: lag 0, 10 records in total
    long committed = 0;
    for (String l : describe.lines().toList()) {
      String[] f = l.trim().split("\\s+");
      if (f.length >= 6 && f[0].equals(group) && f[1].equals(topic)) {
        committed += Long.parseLong(f[3]);
        assertEquals("0", f[5], "lag in: " + l);
      }
    }
    assertEquals(10, committed, describe);

    String reset = tool("kafka-consumer-groups", BS, bs, "--reset-offsets", "--group", group, "--topic", topic,
        "--to-earliest", "--execute").ok().stdout();
    assertTrue(reset.contains(topic), reset);
    String after = tool("kafka-consumer-groups", BS, bs, "--describe", "--group", group).ok().stdout();
    for (String l : after.lines().toList()) {
      String[] f = l.trim().split("\\s+");
      if (f.length >= 6 && f[0].equals(group) && f[1].equals(topic)) assertEquals("0", f[3], "reset to earliest: " + l);
    }
    String deleted = tool("kafka-consumer-groups", BS, bs, "--delete", "--group", group).ok().stdout();
    assertTrue(deleted.contains("Deletion of requested consumer groups"), deleted);
    assertFalse(tool("kafka-consumer-groups", BS, bs, "--list").ok().stdout().lines().anyMatch(group::equals));
  }

  @Test
  void configsGetOffsetsAndDeleteRecords() throws Exception {
    String topic = Broker.uniqueName("tools-configs");
    String bs = Broker.bootstrap();
    tool("kafka-topics", BS, bs, "--create", "--topic", topic, "--partitions", "1").ok();
    tool("kafka-configs", BS, bs, "--entity-type", "topics", "--entity-name", topic, "--alter",
        "--add-config", "retention.ms=86400000,max.message.bytes=2000000").ok();
    String described = tool("kafka-configs", BS, bs, "--entity-type", "topics", "--entity-name", topic, "--describe").ok().stdout();
    assertTrue(described.contains("retention.ms=86400000"), described);
    assertTrue(described.contains("max.message.bytes=2000000"), described);
    tool("kafka-configs", BS, bs, "--entity-type", "topics", "--entity-name", topic, "--alter", "--delete-config", "max.message.bytes").ok();
    described = tool("kafka-configs", BS, bs, "--entity-type", "topics", "--entity-name", topic, "--describe").ok().stdout();
    assertFalse(described.contains("max.message.bytes=2000000"), described);

    StringBuilder in = new StringBuilder();
    for (int i = 0; i < 30; i++) in.append("line ").append(i).append('\n');
    produceLines(topic, in.toString());
    assertEquals(topic + ":0:30", tool("kafka-get-offsets", BS, bs, "--topic", topic).ok().stdout().trim());
    assertEquals(topic + ":0:0", tool("kafka-get-offsets", BS, bs, "--topic", topic, "--time", "-2").ok().stdout().trim());

    Path json = Files.createTempFile("delete-records", ".json");
    Files.writeString(json, "{\"partitions\":[{\"topic\":\"" + topic + "\",\"partition\":0,\"offset\":12}],\"version\":1}");
    String del = tool("kafka-delete-records", BS, bs, "--offset-json-file", json.toString()).ok().stdout();
    assertTrue(del.contains("low_watermark: 12"), del);
    assertEquals(topic + ":0:12", tool("kafka-get-offsets", BS, bs, "--topic", topic, "--time", "-2").ok().stdout().trim());
    Files.delete(json);
  }

  @Test
  void producerAndConsumerPerfTests() throws Exception {
    String topic = Broker.uniqueName("tools-perf");
    String bs = Broker.bootstrap();
    tool("kafka-topics", BS, bs, "--create", "--topic", topic, "--partitions", "2").ok();
    String prod = tool(null, Duration.ofSeconds(120), Map.of(), "kafka-producer-perf-test",
        args("--topic", topic, "--num-records", "50000", "--record-size", "100", "--throughput", "-1",
            "--producer-props", "bootstrap.servers=" + bs, "acks=1", "linger.ms=5")).ok().stdout();
    assertTrue(prod.contains("50000 records sent"), prod);
    String cons = tool(null, Duration.ofSeconds(120), Map.of(), "kafka-consumer-perf-test",
        BS, bs, "--topic", topic, "--messages", "50000", "--timeout", "30000").ok().stdout();
    // header line, then: start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, …
    String[] row = cons.trim().lines().reduce((a, b) -> b).orElse("").split(",\\s*");
    assertEquals("50000", row[4].trim(), cons);
  }

  static final Pattern VALUE = Pattern.compile("\"value\":\"(\\d+)\"");

  static Set<String> values(String out, String event) {
    Set<String> s = new HashSet<>();
    for (String l : out.lines().toList()) {
      if (!l.contains("\"name\":\"" + event + "\"")) continue;
      Matcher m = VALUE.matcher(l);
      if (m.find()) s.add(m.group(1));
    }
    return s;
  }

  @Test
  void verifiableProducerAndConsumerLoseNoAckedMessage() throws Exception {
    String topic = Broker.uniqueName("tools-verifiable");
    String bs = Broker.bootstrap();
    tool("kafka-topics", BS, bs, "--create", "--topic", topic, "--partitions", "3").ok();
    Path producerConfig = Files.createTempFile("verifiable", ".properties");
    Files.writeString(producerConfig, "");
    String prod = tool(null, Duration.ofSeconds(120), Map.of(), "kafka-verifiable-producer",
        BS, bs, "--topic", topic, "--max-messages", "5000", "--acks", "-1",
        "--producer.config", producerConfig.toString()).ok().stdout();
    Files.delete(producerConfig);
    Set<String> acked = values(prod, "producer_send_success");
    assertEquals(5000, acked.size(), "acknowledged sends");
    String cons = tool(null, Duration.ofSeconds(120), Map.of(), "kafka-verifiable-consumer",
        BS, bs, "--topic", topic, "--group-id", Broker.uniqueName("verifiable"), "--group-protocol", "classic",
        "--max-messages", "5000", "--reset-policy", "earliest", "--verbose").ok().stdout();
    Set<String> consumed = values(cons, "record_data");
    Set<String> lost = new HashSet<>(acked);
    lost.removeAll(consumed);
    assertTrue(lost.isEmpty(), lost.size() + " acknowledged messages not consumed, e.g. " + lost.stream().limit(5).toList());
    assertTrue(cons.contains("\"name\":\"offsets_committed\""), "the consumer committed offsets");
  }
}
