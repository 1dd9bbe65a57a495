package dev.runnel.eco;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * The broker every test in this module talks to: one per test JVM, started on first use and
 * stopped when the JVM exits.
 *
 * <p>{@code RUNNEL_TEST_BROKER} picks it: {@code runnel} (default) starts {@code
 * target/debug/runnel} (or {@code $RUNNEL_BIN}) on 127.0.0.1:0 with a temp data dir;
 * {@code apache-kafka} starts Apache Kafka through {@code scripts/apache-kafka start}. Both get
 * {@code group.initial.rebalance.delay.ms=0} so group tests need not wait. The same tests run on
 * both, so a failure on Runnel alone is Runnel's.
 *
 * <p>Also runs Kafka's command-line tools ({@link #tool}) as {@code bin/NAME.sh} would, through
 * {@code scripts/apache-kafka tool}.
 */
public final class Broker {
  public static final Path REPO = findRepo();
  private static final Pattern LISTENER = Pattern.compile("Kafka listener on (\\S+):(\\d+) ");
  private static Broker instance;

  public final String kind;
  public final String bootstrap;
  private final Process process;
  private final Path dir;

  private Broker(String kind, String bootstrap, Process process, Path dir) {
    this.kind = kind;
    this.bootstrap = bootstrap;
    this.process = process;
    this.dir = dir;
  }

  /** The shared broker, started on first use. */
  public static synchronized Broker get() {
    if (instance == null) {
      try {
        instance = start();
      } catch (Exception e) {
        throw new IllegalStateException("cannot start the test broker: " + e, e);
      }
      Runtime.getRuntime().addShutdownHook(new Thread(instance::stop));
    }
    return instance;
  }

  public static String bootstrap() {
    return get().bootstrap;
  }

  public static boolean isRunnel() {
    return get().kind.equals("runnel");
  }

  /** A topic name no other test uses. */
  public static String uniqueName(String prefix) {
    return prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
  }

  private static Broker start() throws Exception {
    String kind = System.getenv().getOrDefault("RUNNEL_TEST_BROKER", "runnel");
    switch (kind) {
      case "runnel":
        return startRunnel();
      case "apache-kafka":
        return startApacheKafka();
      default:
        throw new IllegalArgumentException("RUNNEL_TEST_BROKER must be runnel or apache-kafka, not " + kind);
    }
  }

  private static Broker startRunnel() throws Exception {
    String bin = System.getenv().getOrDefault("RUNNEL_BIN", REPO.resolve("target/debug/runnel").toString());
    Path data = Files.createTempDirectory("runnel-java-");
    ProcessBuilder pb = new ProcessBuilder(bin, "broker", "--listen", "127.0.0.1:0",
        "--data-dir", data.resolve("data").toString(), "-o", "group.initial.rebalance.delay.ms=0");
    pb.environment().put("RUNNEL_LOG_LEVEL", System.getenv().getOrDefault("RUNNEL_TEST_LOG", "warn"));
    pb.environment().put("RUNNEL_ADMIN_LISTEN", "127.0.0.1:0");
    pb.redirectError(data.resolve("stderr.log").toFile());
    Process p = pb.start();
    BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
    String line = out.readLine();
    Matcher m = LISTENER.matcher(line == null ? "" : line);
    if (!m.find()) {
      p.destroyForcibly();
      throw new IllegalStateException("unexpected runnel startup line: " + line + "; stderr: "
          + Files.readString(data.resolve("stderr.log")));
    }
    drain(out);
    return new Broker("runnel", m.group(1) + ":" + m.group(2), p, data);
  }

  private static Broker startApacheKafka() throws Exception {
    ProcessBuilder pb = new ProcessBuilder(REPO.resolve("scripts/apache-kafka").toString(), "start");
    pb.environment().put("APACHE_KAFKA_REBALANCE_DELAY_MS", "0");
    pb.redirectError(ProcessBuilder.Redirect.INHERIT);
    Process p = pb.start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (!p.waitFor(120, TimeUnit.SECONDS) || p.exitValue() != 0) {
      throw new IllegalStateException("scripts/apache-kafka start failed: " + out);
    }
    String bootstrap = null;
    Path dir = null;
    for (String l : out.split("\n")) {
      if (l.startsWith("BOOTSTRAP=")) bootstrap = l.substring(10);
      if (l.startsWith("DIR=")) dir = Path.of(l.substring(4));
    }
    if (bootstrap == null || dir == null) throw new IllegalStateException("no BOOTSTRAP/DIR in: " + out);
    return new Broker("apache-kafka", bootstrap, null, dir);
  }

  private void stop() {
    try {
      if (process != null) {
        process.destroy(); // SIGTERM: Runnel flushes and exits 0
        if (!process.waitFor(20, TimeUnit.SECONDS)) process.destroyForcibly();
        deleteTree(dir);
      } else {
        new ProcessBuilder(REPO.resolve("scripts/apache-kafka").toString(), "stop", dir.toString())
            .inheritIO().start().waitFor(60, TimeUnit.SECONDS);
      }
    } catch (Exception ignored) {
    }
  }

  static void deleteTree(Path p) throws IOException {
    if (!Files.exists(p)) return;
    try (Stream<Path> s = Files.walk(p)) {
      s.sorted(Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
    }
  }

  /** Client properties with bootstrap.servers set. */
  public static Properties props(Object... kv) {
    Properties p = new Properties();
    p.put("bootstrap.servers", bootstrap());
    for (int i = 0; i < kv.length; i += 2) p.put(kv[i].toString(), kv[i + 1].toString());
    return p;
  }

  /** The output of one tool run. */
  public record ToolResult(int exit, String stdout, String stderr) {
    public ToolResult ok() {
      if (exit != 0) throw new AssertionError("tool exited " + exit + "\nstdout:\n" + stdout + "\nstderr:\n" + stderr);
      return this;
    }
  }

  /**
   * Runs Kafka's tool {@code name} (kafka-topics, kafka-console-producer, …) with {@code args},
   * feeding {@code stdin} (may be null), and waits at most {@code timeout}.
   */
  public static ToolResult tool(String stdin, Duration timeout, Map<String, String> env, String name, String... args)
      throws Exception {
    List<String> cmd = new ArrayList<>(List.of(REPO.resolve("scripts/apache-kafka").toString(), "tool", name));
    cmd.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(cmd);
    pb.environment().putAll(env);
    Path out = Files.createTempFile("tool-out", ".txt");
    Path err = Files.createTempFile("tool-err", ".txt");
    pb.redirectOutput(out.toFile()).redirectError(err.toFile());
    Process p = pb.start();
    if (stdin != null) p.getOutputStream().write(stdin.getBytes(StandardCharsets.UTF_8));
    p.getOutputStream().close();
    if (!p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
      p.descendants().forEach(ProcessHandle::destroyForcibly);
      p.destroyForcibly();
      throw new AssertionError(name + " did not finish within " + timeout + "\nstdout:\n"
          + Files.readString(out) + "\nstderr:\n" + Files.readString(err));
    }
    ToolResult r = new ToolResult(p.exitValue(), Files.readString(out), Files.readString(err));
    Files.delete(out);
    Files.delete(err);
    return r;
  }

  public static ToolResult tool(String name, String... args) throws Exception {
    return tool(null, Duration.ofSeconds(90), Map.of(), name, args);
  }

  private static Path findRepo() {
    Path p = Path.of("").toAbsolutePath();
    while (p != null && !Files.exists(p.resolve("scripts/apache-kafka"))) p = p.getParent();
    if (p == null) throw new IllegalStateException("run from inside the Runnel repository");
    return p;
  }

  /** Reads the rest of a broker's stdout on a daemon thread, so that it never blocks on a full pipe. */
  static void drain(BufferedReader out) {
    Thread drain = new Thread(() -> {
      try {
        while (out.readLine() != null) { }
      } catch (IOException ignored) { }
    });
    drain.setDaemon(true);
    drain.start();
  }
}
