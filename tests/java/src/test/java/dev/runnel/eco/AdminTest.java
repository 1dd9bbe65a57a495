package dev.runnel.eco;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.GroupNotEmptyException;
import org.apache.kafka.common.errors.InvalidPartitionsException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The Java AdminClient: topics, partitions, configs, offsets, records, groups, the cluster. */
class AdminTest {
  static Admin admin;

  @BeforeAll
  static void open() {
    admin = Admin.create(Broker.props());
  }

  @AfterAll
  static void close() {
    admin.close();
  }

  static Throwable cause(ExecutionException e) {
    return e.getCause();
  }

  @Test
  void topicsLifeCycle() throws Exception {
    String topic = Broker.uniqueName("admin-topic");
    admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1).configs(Map.of("retention.ms", "3600000")))).all().get();
    ExecutionException dup = assertThrows(ExecutionException.class,
        () -> admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get());
    assertInstanceOf(TopicExistsException.class, cause(dup));

    assertTrue(admin.listTopics().names().get().contains(topic));
    TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
    assertEquals(2, d.partitions().size());
    assertNotNull(d.topicId());
    assertEquals(1, d.partitions().get(0).replicas().size());
    // by id too
    TopicDescription byId = admin.describeTopics(org.apache.kafka.common.TopicCollection.ofTopicIds(List.of(d.topicId())))
        .allTopicIds().get().get(d.topicId());
    assertEquals(topic, byId.name());

    admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all().get();
    assertEquals(5, admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic).partitions().size());
    ExecutionException shrink = assertThrows(ExecutionException.class,
        () -> admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(3))).all().get());
    assertInstanceOf(InvalidPartitionsException.class, cause(shrink));

    admin.deleteTopics(List.of(topic)).all().get();
    long deadline = System.currentTimeMillis() + 15_000;
    while (admin.listTopics().names().get().contains(topic) && System.currentTimeMillis() < deadline) Thread.sleep(100);
    assertFalse(admin.listTopics().names().get().contains(topic));
    ExecutionException gone = assertThrows(ExecutionException.class,
        () -> admin.describeTopics(List.of(topic)).allTopicNames().get());
    assertInstanceOf(UnknownTopicOrPartitionException.class, cause(gone));
  }

  @Test
  void incrementalConfigs() throws Exception {
    String topic = Broker.uniqueName("admin-config");
    admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get();
    ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
    admin.incrementalAlterConfigs(Map.of(res, List.of(
        new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET),
        new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"), AlterConfigOp.OpType.APPEND)))).all().get();
    Config c = admin.describeConfigs(List.of(res)).all().get().get(res);
    assertEquals("7200000", c.get("retention.ms").value());
    assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, c.get("retention.ms").source());
    assertEquals(Set.of("delete", "compact"), Set.of(c.get("cleanup.policy").value().split(",")));

    admin.incrementalAlterConfigs(Map.of(res, List.of(
        new AlterConfigOp(new ConfigEntry("retention.ms", ""), AlterConfigOp.OpType.DELETE),
        new AlterConfigOp(new ConfigEntry("cleanup.policy", "delete"), AlterConfigOp.OpType.SUBTRACT)))).all().get();
    c = admin.describeConfigs(List.of(res)).all().get().get(res);
    assertEquals("604800000", c.get("retention.ms").value());
    assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, c.get("retention.ms").source());
    assertEquals("compact", c.get("cleanup.policy").value());

    ExecutionException bad = assertThrows(ExecutionException.class, () -> admin.incrementalAlterConfigs(Map.of(res, List.of(
        new AlterConfigOp(new ConfigEntry("no.such.config", "1"), AlterConfigOp.OpType.SET)))).all().get());
    assertEquals("InvalidConfigurationException", cause(bad).getClass().getSimpleName());

    ConfigResource broker = new ConfigResource(ConfigResource.Type.BROKER, "1");
    Config bc = admin.describeConfigs(List.of(broker)).all().get().get(broker);
    assertNotNull(bc.get("log.retention.ms"), "broker config has log.retention.ms");
  }

  @Test
  void listOffsetsAndDeleteRecords() throws Exception {
    String topic = Broker.uniqueName("admin-offsets");
    admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get();
    TopicPartition tp = new TopicPartition(topic, 0);
    long base = System.currentTimeMillis() - 60_000;
    try (KafkaProducer<String, String> p = new KafkaProducer<>(ProducerConsumerTest.producerProps())) {
      for (int i = 0; i < 20; i++) p.send(new ProducerRecord<>(topic, 0, base + i * 100L, "k", "v" + i));
      p.flush();
    }
    assertEquals(0, admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp).get().offset());
    assertEquals(20, admin.listOffsets(Map.of(tp, OffsetSpec.latest())).partitionResult(tp).get().offset());
    ListOffsetsResultInfo max = admin.listOffsets(Map.of(tp, OffsetSpec.maxTimestamp())).partitionResult(tp).get();
    assertEquals(19, max.offset());
    assertEquals(base + 1900, max.timestamp());
    assertEquals(5, admin.listOffsets(Map.of(tp, OffsetSpec.forTimestamp(base + 450))).partitionResult(tp).get().offset());

    long low = admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(12))).lowWatermarks().get(tp).get().lowWatermark();
    assertEquals(12, low);
    assertEquals(12, admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp).get().offset());
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(ProducerConsumerTest.consumerProps())) {
      c.assign(List.of(tp));
      c.seekToBeginning(List.of(tp));
      assertEquals("v12", ProducerConsumerTest.pollN(c, 8).get(0).value());
    }
  }

  @Test
  void consumerGroups() throws Exception {
    String topic = Broker.uniqueName("admin-groups");
    String group = Broker.uniqueName("g");
    admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get();
    TopicPartition p0 = new TopicPartition(topic, 0);
    TopicPartition p1 = new TopicPartition(topic, 1);
    try (KafkaProducer<String, String> p = new KafkaProducer<>(ProducerConsumerTest.producerProps())) {
      for (int i = 0; i < 10; i++) {
        p.send(new ProducerRecord<>(topic, 0, "k", "a" + i));
        p.send(new ProducerRecord<>(topic, 1, "k", "b" + i));
      }
      p.flush();
    }
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(ProducerConsumerTest.consumerProps(
        "group.id", group, "enable.auto.commit", false, "client.id", "member-one"))) {
      c.subscribe(List.of(topic));
      ProducerConsumerTest.pollN(c, 20);
      c.commitSync();

      Collection<GroupListing> groups = admin.listGroups().all().get();
      assertTrue(groups.stream().anyMatch(g -> g.groupId().equals(group)), "listGroups has " + group);
      ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
      assertEquals(GroupState.STABLE, d.groupState());
      assertEquals(1, d.members().size());
      assertEquals("member-one", d.members().iterator().next().clientId());
      assertEquals(Set.of(p0, p1), d.members().iterator().next().assignment().topicPartitions());

      ExecutionException nonEmpty = assertThrows(ExecutionException.class,
          () -> admin.deleteConsumerGroups(List.of(group)).all().get());
      assertInstanceOf(GroupNotEmptyException.class, cause(nonEmpty));
    }
    assertEquals(Map.of(p0, new OffsetAndMetadata(10), p1, new OffsetAndMetadata(10)),
        stripEpochs(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get()));
    admin.alterConsumerGroupOffsets(group, Map.of(p0, new OffsetAndMetadata(3))).all().get();
    assertEquals(3, admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get().get(p0).offset());
    admin.deleteConsumerGroupOffsets(group, Set.of(p1)).all().get();
    assertEquals(Set.of(p0), admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get().keySet());
    assertEquals(GroupState.EMPTY, admin.describeConsumerGroups(List.of(group)).all().get().get(group).groupState());

    admin.deleteConsumerGroups(List.of(group)).all().get();
    Set<String> after = admin.listGroups().all().get().stream().map(GroupListing::groupId).collect(Collectors.toSet());
    assertFalse(after.contains(group));
  }

  static Map<TopicPartition, OffsetAndMetadata> stripEpochs(Map<TopicPartition, OffsetAndMetadata> m) {
    return m.entrySet().stream().collect(Collectors.toMap(Map.Entry::getKey, e -> new OffsetAndMetadata(e.getValue().offset())));
  }

  @Test
  void describeCluster() throws Exception {
    DescribeClusterResult c = admin.describeCluster();
    assertNotNull(c.clusterId().get(10, java.util.concurrent.TimeUnit.SECONDS));
    assertEquals(1, c.nodes().get().size());
    assertEquals(c.nodes().get().iterator().next().id(), c.controller().get().id());
    assertEquals(Broker.bootstrap(), c.nodes().get().iterator().next().host() + ":" + c.nodes().get().iterator().next().port());
    Duration.ofSeconds(1);
  }
}
