package dev.runnel.eco;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/**
 * Kafka Connect standalone (connect-standalone, as documented) with the file source and file
 * sink connectors: lines appended to a file arrive in the sink file through a topic, and after
 * a restart neither connector repeats or skips a line (source offsets in the worker's offset
 * file, sink offsets committed to the broker's group).
 */
class ConnectTest {

  static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      return s.getLocalPort();
    }
  }

  static Process startConnect(Path dir) throws IOException {
    ProcessBuilder pb = new ProcessBuilder(Broker.REPO.resolve("scripts/apache-kafka").toString(), "tool",
        "connect-standalone", dir.resolve("worker.properties").toString(),
        dir.resolve("source.properties").toString(), dir.resolve("sink.properties").toString());
    pb.redirectErrorStream(true);
    pb.redirectOutput(ProcessBuilder.Redirect.appendTo(dir.resolve("connect.log").toFile()));
    return pb.start();
  }

  static void stop(Process p) throws InterruptedException {
    p.destroy(); // SIGTERM: Connect stops its tasks and commits their offsets
    if (!p.waitFor(60, TimeUnit.SECONDS)) {
      p.destroyForcibly();
      throw new AssertionError("connect-standalone did not stop on SIGTERM");
    }
  }

  static List<String> awaitSink(Path sink, int n, Path log) throws Exception {
    long deadline = System.currentTimeMillis() + 150_000;
    List<String> lines = List.of();
    while (System.currentTimeMillis() < deadline) {
      lines = Files.exists(sink) ? Files.readAllLines(sink) : List.of();
      if (lines.size() >= n) break;
      Thread.sleep(250);
    }
    if (lines.size() < n) {
      List<String> l = Files.readAllLines(log).stream().filter(x -> !x.contains(" INFO ") || x.contains("ERROR")
          || x.contains("roup") || x.contains("ffset")).collect(Collectors.toList());
      throw new AssertionError("sink has " + lines.size() + " of " + n + " lines; connect log (warnings, groups, offsets):\n"
          + String.join("\n", l.subList(Math.max(0, l.size() - 80), l.size())));
    }
    Thread.sleep(1500); // anything more than n would be a duplicate
    return Files.readAllLines(sink);
  }

  static List<String> lines(int from, int to) {
    return IntStream.range(from, to).mapToObj(i -> "line " + i).collect(Collectors.toList());
  }

  @Test
  void fileSourceToTopicToFileSinkSurvivesRestart() throws Exception {
    Path dir = Files.createTempDirectory("connect");
    String topic = Broker.uniqueName("connect-lines");
    ProducerConsumerTest.createTopic(topic, 1, java.util.Map.of());
    Path source = dir.resolve("source.txt");
    Path sink = dir.resolve("sink.txt");
    Files.writeString(dir.resolve("worker.properties"), String.join("\n",
        "bootstrap.servers=" + Broker.bootstrap(),
        "key.converter=org.apache.kafka.connect.storage.StringConverter",
        "value.converter=org.apache.kafka.connect.storage.StringConverter",
        "offset.storage.file.filename=" + dir.resolve("connect.offsets"),
        "offset.flush.interval.ms=500",
        "listeners=http://127.0.0.1:" + freePort(),
        "plugin.discovery=only_scan",
        // A restarted sink task rejoins its group; a short session keeps the wait for the
        // old member short should it not have left.
        "consumer.session.timeout.ms=10000",
        "consumer.heartbeat.interval.ms=1000",
        ""));
    Files.writeString(dir.resolve("source.properties"), String.join("\n",
        "name=" + topic + "-source",
        "connector.class=org.apache.kafka.connect.file.FileStreamSourceConnector",
        "tasks.max=1",
        "file=" + source,
        "topic=" + topic,
        ""));
    Files.writeString(dir.resolve("sink.properties"), String.join("\n",
        "name=" + topic + "-sink",
        "connector.class=org.apache.kafka.connect.file.FileStreamSinkConnector",
        "tasks.max=1",
        "file=" + sink,
        "topics=" + topic,
        "consumer.override.auto.offset.reset=earliest",
        ""));
    Files.write(source, lines(0, 20));

    Process connect = startConnect(dir);
    try {
      assertEquals(lines(0, 20), awaitSink(sink, 20, dir.resolve("connect.log")));
    } finally {
      stop(connect);
    }

    // While Connect is down, more lines arrive; after the restart exactly those follow.
    Files.write(source, lines(20, 30), StandardOpenOption.APPEND);
    connect = startConnect(dir);
    try {
      List<String> want = new ArrayList<>(lines(0, 30));
      assertEquals(want, awaitSink(sink, 30, dir.resolve("connect.log")), "no line lost or repeated across the restart");
    } finally {
      stop(connect);
      Broker.deleteTree(dir);
    }
  }
}
