package gotests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// franzOpts are the options every franz-go client here gets: the seed broker, then the
// defaults (franz-go's producer is idempotent by default).
func franzOpts(extra ...kgo.Opt) []kgo.Opt {
	return append([]kgo.Opt{kgo.SeedBrokers(bootstrap)}, extra...)
}

func newAdmin(t *testing.T) *kadm.Client {
	c, err := kgo.NewClient(franzOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return kadm.NewClient(c)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func createTopic(t *testing.T, adm *kadm.Client, topic string, partitions int32, configs map[string]*string) {
	resp, err := adm.CreateTopic(ctx(t), partitions, 1, configs, topic)
	if err != nil || resp.Err != nil {
		t.Fatalf("create %s: %v %v", topic, err, resp.Err)
	}
}

func TestFranzProduceEveryCodecAndConsumeInAGroup(t *testing.T) {
	adm := newAdmin(t)
	topic := unique("franz-codecs")
	createTopic(t, adm, topic, 3, nil)
	codecs := map[string]kgo.CompressionCodec{
		"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
		"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
	}
	sent := map[string]string{}
	for name, codec := range codecs {
		p, err := kgo.NewClient(franzOpts(kgo.ProducerBatchCompression(codec), kgo.DefaultProduceTopic(topic))...)
		if err != nil {
			t.Fatal(err)
		}
		var recs []*kgo.Record
		for i := 0; i < 200; i++ {
			k, v := fmt.Sprintf("%s-%d", name, i), fmt.Sprintf("value %d of %s", i, name)
			sent[k] = v
			recs = append(recs, &kgo.Record{Key: []byte(k), Value: []byte(v), Headers: []kgo.RecordHeader{{Key: "codec", Value: []byte(name)}}})
		}
		if err := p.ProduceSync(ctx(t), recs...).FirstErr(); err != nil {
			t.Fatalf("produce with %s: %v", name, err)
		}
		p.Close()
	}

	group := unique("franz-group")
	c, err := kgo.NewClient(franzOpts(kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())...)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	deadline := time.Now().Add(45 * time.Second)
	for len(got) < len(sent) && time.Now().Before(deadline) {
		fs := c.PollFetches(ctx(t))
		if errs := fs.Errors(); len(errs) > 0 {
			t.Fatalf("fetch errors: %v", errs)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got[string(r.Key)] = string(r.Value)
			if len(r.Headers) != 1 || r.Headers[0].Key != "codec" {
				t.Errorf("headers of %s: %v", r.Key, r.Headers)
			}
		})
	}
	if err := c.CommitUncommittedOffsets(ctx(t)); err != nil {
		t.Fatalf("commit: %v", err)
	}
	c.Close() // leaves the group
	if len(got) != len(sent) {
		t.Fatalf("consumed %d of %d records", len(got), len(sent))
	}
	for k, v := range sent {
		if got[k] != v {
			t.Fatalf("record %s: got %q, want %q", k, got[k], v)
		}
	}
	offs, err := adm.FetchOffsets(ctx(t), group)
	if err != nil {
		t.Fatal(err)
	}
	var committed int64
	offs.Each(func(o kadm.OffsetResponse) { committed += o.At })
	if committed != int64(len(sent)) {
		t.Fatalf("committed offsets add up to %d, want %d", committed, len(sent))
	}
}

func TestKadmAdminCalls(t *testing.T) {
	adm := newAdmin(t)
	topic := unique("kadm")
	retention := "3600000"
	createTopic(t, adm, topic, 2, map[string]*string{"retention.ms": &retention})

	meta, err := adm.Metadata(ctx(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(meta.Brokers) != 1 || len(meta.Topics[topic].Partitions) != 2 {
		t.Fatalf("metadata: %d brokers, %d partitions", len(meta.Brokers), len(meta.Topics[topic].Partitions))
	}

	// Incremental configs.
	val := "7200000"
	if _, err := adm.AlterTopicConfigs(ctx(t), []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: &val}}, topic); err != nil {
		t.Fatal(err)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range rc.Configs {
		if c.Key == "retention.ms" {
			found = c.MaybeValue() == "7200000"
		}
	}
	if !found {
		t.Fatal("retention.ms not 7200000 after AlterTopicConfigs")
	}

	if _, err := adm.CreatePartitions(ctx(t), 2, topic); err != nil { // add 2: 4 in all
		t.Fatal(err)
	}
	td, err := adm.ListTopics(ctx(t), topic)
	if err != nil || len(td[topic].Partitions) != 4 {
		t.Fatalf("after CreatePartitions: %v, %d partitions", err, len(td[topic].Partitions))
	}

	// Records, end offsets, DeleteRecords.
	p, err := kgo.NewClient(franzOpts(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if err := p.ProduceSync(ctx(t), &kgo.Record{Partition: 0, Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	ends, err := adm.ListEndOffsets(ctx(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := ends.Lookup(topic, 0); o.Offset != 10 {
		t.Fatalf("end offset %d, want 10", o.Offset)
	}
	os := kadm.Offsets{}
	os.Add(kadm.Offset{Topic: topic, Partition: 0, At: 4})
	dr, err := adm.DeleteRecords(ctx(t), os)
	if err != nil || dr.Error() != nil {
		t.Fatalf("DeleteRecords: %v %v", err, dr.Error())
	}
	starts, err := adm.ListStartOffsets(ctx(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := starts.Lookup(topic, 0); o.Offset != 4 {
		t.Fatalf("start offset %d after DeleteRecords, want 4", o.Offset)
	}

	// Groups: commit, list, describe, delete.
	group := unique("kadm-group")
	commit := kadm.Offsets{}
	commit.Add(kadm.Offset{Topic: topic, Partition: 0, At: 7, LeaderEpoch: -1})
	if _, err := adm.CommitOffsets(ctx(t), group, commit); err != nil {
		t.Fatal(err)
	}
	listed, err := adm.ListGroups(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := listed[group]; !ok {
		t.Fatalf("ListGroups lacks %s", group)
	}
	dg, err := adm.DescribeGroups(ctx(t), group)
	if err != nil || dg[group].Err != nil || dg[group].State != "Empty" {
		t.Fatalf("DescribeGroups: %v %+v", err, dg[group])
	}
	fo, err := adm.FetchOffsets(ctx(t), group)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := fo.Lookup(topic, 0); o.At != 7 {
		t.Fatalf("committed %d, want 7", o.At)
	}
	if _, err := adm.DeleteGroup(ctx(t), group); err != nil {
		t.Fatal(err)
	}

	// The cluster, then delete the topic.
	bm, err := adm.BrokerMetadata(ctx(t))
	if err != nil || len(bm.Brokers) != 1 || bm.Controller != bm.Brokers[0].NodeID {
		t.Fatalf("BrokerMetadata: %v %+v", err, bm)
	}
	if _, err := adm.DeleteTopic(ctx(t), topic); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		td, err = adm.ListTopics(ctx(t))
		if err == nil && !td.Has(topic) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s still listed after DeleteTopic", topic)
}
