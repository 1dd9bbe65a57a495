package gotests

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// metric reads one sample of Runnel's /metrics (0 when absent).
func metric(t *testing.T, name string) float64 {
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

// sessionCheck follows what each partition must hold next.
type sessionCheck struct {
	t        *testing.T
	produced map[string]int
	next     map[string]int64
}

func key(topic string, p int32) string { return fmt.Sprintf("%s/%d", topic, p) }

func (c *sessionCheck) produce(cl *kgo.Client, topic string, p int32, n int) {
	k := key(topic, p)
	// In batches of 10 records: a partition's records then take several fetches of
	// FetchMaxPartitionBytes (only the first batch is always sent whole).
	for sent := 0; sent < n; sent += 10 {
		var recs []*kgo.Record
		for i := sent; i < n && i < sent+10; i++ {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(fmt.Sprintf("%s#%d", k, c.produced[k]+i))})
		}
		if err := cl.ProduceSync(ctx(c.t), recs...).FirstErr(); err != nil {
			c.t.Fatal(err)
		}
	}
	c.produced[k] += n
}

// consume polls until every partition in want has been read to its end, checking that
// each record comes once, in order, and only from a partition in want.
func (c *sessionCheck) consume(cl *kgo.Client, want map[string]bool) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		done := true
		for k := range want {
			if c.next[k] != int64(c.produced[k]) {
				done = false
			}
		}
		if done {
			return
		}
		fs := cl.PollRecords(ctx(c.t), 1000)
		fs.EachError(func(topic string, p int32, err error) { c.t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			k := key(r.Topic, r.Partition)
			if !want[k] {
				c.t.Fatalf("a record of %s, which is not consumed now: %s", k, r.Value)
			}
			if r.Offset != c.next[k] || string(r.Value) != fmt.Sprintf("%s#%d", k, c.next[k]) {
				c.t.Fatalf("%s: got offset %d %q, want offset %d", k, r.Offset, r.Value, c.next[k])
			}
			c.next[k]++
		})
	}
	c.t.Fatalf("not everything read in 60 s: read %v of %v", c.next, c.produced)
}

func partitions(topics map[string]int32) map[string]bool {
	m := map[string]bool{}
	for topic, n := range topics {
		for p := int32(0); p < n; p++ {
			m[key(topic, p)] = true
		}
	}
	return m
}

// franz-go uses incremental fetch sessions (KIP-227) by default: every record is read
// exactly once and in order while partitions go quiet and wake up, a topic is added and
// another removed; on Runnel its metrics show the incremental fetches.
func TestFranzFetchSessions(t *testing.T) {
	adm := newAdmin(t)
	a, b := unique("franz-sess-a"), unique("franz-sess-b")
	createTopic(t, adm, a, 20, nil)
	createTopic(t, adm, b, 5, nil)
	var before float64
	if isRunnel {
		before = metric(t, "runnel_fetch_session_incremental_requests_total")
	}
	prod, err := kgo.NewClient(franzOpts(kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	cons, err := kgo.NewClient(franzOpts(kgo.ConsumeTopics(a), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxPartitionBytes(1024))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	c := &sessionCheck{t: t, produced: map[string]int{}, next: map[string]int64{}}
	onlyA := partitions(map[string]int32{a: 20})
	for p := int32(0); p < 5; p++ {
		c.produce(prod, a, p, 200)
	}
	c.consume(cons, onlyA)
	// Quiet partitions wake up, busy ones go quiet.
	for p := int32(10); p < 15; p++ {
		c.produce(prod, a, p, 100)
	}
	c.consume(cons, onlyA)
	// A topic added.
	cons.AddConsumeTopics(b)
	both := partitions(map[string]int32{a: 20, b: 5})
	for p := int32(0); p < 5; p++ {
		c.produce(prod, b, p, 50)
	}
	c.produce(prod, a, 3, 40)
	c.consume(cons, both)
	// A topic removed: its new records are not read.
	cons.PurgeTopicsFromConsuming(a)
	onlyB := partitions(map[string]int32{b: 5})
	c.produce(prod, a, 1, 25)
	for p := int32(0); p < 5; p += 2 {
		c.produce(prod, b, p, 40)
	}
	c.consume(cons, onlyB)
	if isRunnel {
		after := metric(t, "runnel_fetch_session_incremental_requests_total")
		if after <= before {
			t.Fatalf("no incremental fetch served (%v before, %v after)", before, after)
		}
		t.Logf("incremental fetches: %v", after-before)
	}
}
