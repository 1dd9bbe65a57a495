package dev.runnel.eco;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * A consumer group of three Java members on six partitions, with eager (range) and
 * cooperative-sticky rebalancing: members join, one leaves, and every record is consumed
 * exactly once while members commit after each poll.
 */
class GroupRebalanceTest {

  /** One member polling on its own thread; records what it got and what it was given. */
  static final class Member implements Runnable, ConsumerRebalanceListener {
    final KafkaConsumer<String, String> consumer;
    final Set<TopicPartition> owned = ConcurrentHashMap.newKeySet();
    final List<Collection<TopicPartition>> revocations = new CopyOnWriteArrayList<>();
    final List<ConsumerRecord<String, String>> records = new CopyOnWriteArrayList<>();
    final AtomicBoolean running = new AtomicBoolean(true);
    final Thread thread;
    volatile Throwable failure;

    Member(String group, String assignor, String topic) {
      consumer = new KafkaConsumer<>(ProducerConsumerTest.consumerProps(
          "group.id", group,
          "partition.assignment.strategy", assignor,
          "enable.auto.commit", false,
          "session.timeout.ms", 10_000,
          "heartbeat.interval.ms", 500,
          "max.poll.records", 50));
      consumer.subscribe(List.of(topic), this);
      thread = new Thread(this);
      thread.start();
    }

    @Override
    public void run() {
      try {
        while (running.get()) {
          consumer.poll(Duration.ofMillis(100)).forEach(records::add);
          try {
            consumer.commitSync();
          } catch (RebalanceInProgressException e) {
            // committed in onPartitionsRevoked before the partitions move
          }
        }
        consumer.close(); // leaves the group
      } catch (Throwable t) {
        failure = t;
      }
    }

    void stop() throws InterruptedException {
      running.set(false);
      thread.join(30_000);
      if (failure != null) throw new AssertionError("member failed", failure);
    }

    @Override
    public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
      if (!partitions.isEmpty()) consumer.commitSync();
      owned.removeAll(partitions);
      if (!partitions.isEmpty()) revocations.add(List.copyOf(partitions));
    }

    @Override
    public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
      owned.addAll(partitions);
    }

    @Override
    public void onPartitionsLost(Collection<TopicPartition> partitions) {
      owned.removeAll(partitions);
    }
  }

  /** Waits until the members together own each of the topic's partitions exactly once, each member some. */
  static void awaitBalanced(List<Member> members, int partitions) throws InterruptedException {
    long deadline = System.currentTimeMillis() + 45_000;
    String state = "";
    while (System.currentTimeMillis() < deadline) {
      List<TopicPartition> all = new ArrayList<>();
      boolean everyoneHasSome = true;
      for (Member m : members) {
        if (m.failure != null) throw new AssertionError("member failed", m.failure);
        all.addAll(m.owned);
        everyoneHasSome &= !m.owned.isEmpty();
      }
      state = all.toString();
      if (all.size() == partitions && new HashSet<>(all).size() == partitions && everyoneHasSome) return;
      Thread.sleep(100);
    }
    throw new AssertionError("group did not balance " + partitions + " partitions over " + members.size() + " members: " + state);
  }

  static void produce(String topic, int from, int to) {
    try (KafkaProducer<String, String> p = new KafkaProducer<>(ProducerConsumerTest.producerProps())) {
      for (int i = from; i < to; i++) p.send(new ProducerRecord<>(topic, "k" + i, "v" + i));
      p.flush();
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {
      "org.apache.kafka.clients.consumer.RangeAssignor",
      "org.apache.kafka.clients.consumer.CooperativeStickyAssignor"})
  void threeMembersJoinAndOneLeaves(String assignor) throws Exception {
    boolean cooperative = assignor.contains("Cooperative");
    String topic = Broker.uniqueName("java-group");
    String group = Broker.uniqueName("g");
    ProducerConsumerTest.createTopic(topic, 6, Map.of());
    produce(topic, 0, 300);

    List<Member> members = new ArrayList<>();
    members.add(new Member(group, assignor, topic));
    awaitBalanced(members, 6);
    members.add(new Member(group, assignor, topic));
    members.add(new Member(group, assignor, topic));
    awaitBalanced(members, 6);
    for (Member m : members) assertEquals(2, m.owned.size(), "six partitions over three members: " + m.owned);
    produce(topic, 300, 600);

    Member leaving = members.remove(2);
    Set<TopicPartition> keptBefore = new HashSet<>(members.get(0).owned);
    int revocationsBefore = members.get(0).revocations.size();
    leaving.stop();
    awaitBalanced(members, 6);
    if (cooperative) {
      // Cooperative: the staying member keeps what it had; nothing of it is revoked.
      assertTrue(members.get(0).owned.containsAll(keptBefore), "cooperative rebalance took partitions away");
      assertEquals(revocationsBefore, members.get(0).revocations.size(), "cooperative rebalance revoked partitions");
    } else {
      assertTrue(members.get(0).revocations.size() > revocationsBefore, "eager rebalance revokes everything first");
    }
    produce(topic, 600, 900);

    long deadline = System.currentTimeMillis() + 30_000;
    Set<String> keys = new HashSet<>();
    while (System.currentTimeMillis() < deadline) {
      keys.clear();
      for (Member m : List.of(members.get(0), members.get(1), leaving)) m.records.forEach(r -> keys.add(r.key()));
      if (keys.size() == 900) break;
      Thread.sleep(100);
    }
    for (Member m : members) m.stop();
    assertEquals(900, keys.size(), "every record consumed");
    int total = 0;
    for (Member m : List.of(members.get(0), members.get(1), leaving)) total += m.records.size();
    assertEquals(900, total, "no record consumed twice (members commit after every poll)");
  }
}
