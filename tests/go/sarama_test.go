package gotests

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

func saramaConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V3_6_0_0
	c.Producer.Return.Successes = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	return c
}

func TestSaramaProduceEveryCodecConsumeInAGroupAndAdmin(t *testing.T) {
	adm, err := sarama.NewClusterAdmin([]string{bootstrap}, saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	topic := unique("sarama")
	if err := adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	// Apache Kafka answers CreateTopics before its broker's metadata has the topic: wait.
	var topics map[string]sarama.TopicDetail
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if topics, err = adm.ListTopics(); err == nil && topics[topic].NumPartitions == 3 {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := topics[topic]; !ok || d.NumPartitions != 3 {
		t.Fatalf("ListTopics: %v %+v", ok, d)
	}
	md, err := adm.DescribeTopics([]string{topic})
	if err != nil || len(md) != 1 || md[0].Err != sarama.ErrNoError || len(md[0].Partitions) != 3 {
		t.Fatalf("DescribeTopics: %v %+v", err, md)
	}
	brokers, controller, err := adm.DescribeCluster()
	if err != nil || len(brokers) != 1 || controller != brokers[0].ID() {
		t.Fatalf("DescribeCluster: %v %d brokers, controller %d", err, len(brokers), controller)
	}

	codecs := []sarama.CompressionCodec{sarama.CompressionNone, sarama.CompressionGZIP,
		sarama.CompressionSnappy, sarama.CompressionLZ4, sarama.CompressionZSTD}
	sent := map[string]string{}
	for _, codec := range codecs {
		cfg := saramaConfig()
		cfg.Producer.Compression = codec
		p, err := sarama.NewSyncProducer([]string{bootstrap}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		var msgs []*sarama.ProducerMessage
		for i := 0; i < 100; i++ {
			k, v := fmt.Sprintf("%s-%d", codec, i), fmt.Sprintf("value %d", i)
			sent[k] = v
			msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(k), Value: sarama.StringEncoder(v)})
		}
		if err := p.SendMessages(msgs); err != nil {
			t.Fatalf("produce with %s: %v", codec, err)
		}
		p.Close()
	}

	group := unique("sarama-group")
	cg, err := sarama.NewConsumerGroup([]string{bootstrap}, group, saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	h := &collector{want: len(sent), got: map[string]string{}, done: make(chan struct{})}
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	go func() {
		for c.Err() == nil {
			if err := cg.Consume(c, []string{topic}, h); err != nil && c.Err() == nil {
				t.Errorf("consume: %v", err)
				return
			}
		}
	}()
	select {
	case <-h.done:
	case <-c.Done():
	}
	cancel()
	if err := cg.Close(); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	if len(h.got) != len(sent) {
		t.Fatalf("consumed %d of %d", len(h.got), len(sent))
	}
	for k, v := range sent {
		if h.got[k] != v {
			t.Fatalf("record %s: got %q, want %q", k, h.got[k], v)
		}
	}
	h.mu.Unlock()

	offs, err := adm.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0, 1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	var committed int64
	for _, b := range offs.Blocks[topic] {
		committed += b.Offset
	}
	if committed != int64(len(sent)) {
		t.Fatalf("committed offsets add up to %d, want %d", committed, len(sent))
	}
	groups, err := adm.ListConsumerGroups()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := groups[group]; !ok {
		t.Fatalf("ListConsumerGroups lacks %s", group)
	}
	if err := adm.DeleteConsumerGroup(group); err != nil {
		t.Fatal(err)
	}
	if err := adm.DeleteTopic(topic); err != nil {
		t.Fatal(err)
	}
}

// collector is a sarama group handler that keeps every record and marks it consumed.
type collector struct {
	mu   sync.Mutex
	want int
	got  map[string]string
	done chan struct{}
	once sync.Once
}

func (*collector) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (*collector) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *collector) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		h.mu.Lock()
		h.got[string(m.Key)] = string(m.Value)
		n := len(h.got)
		h.mu.Unlock()
		s.MarkMessage(m, "")
		if n >= h.want {
			s.Commit()
			h.once.Do(func() { close(h.done) })
		}
	}
	return nil
}
