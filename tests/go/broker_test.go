// Package gotests drives a broker with the Go clients franz-go (kgo, kadm) and sarama.
//
// TestMain starts the broker every test talks to: Runnel (target/debug/runnel or
// $RUNNEL_BIN) on 127.0.0.1:0 with a temp data dir, or Apache Kafka through
// scripts/apache-kafka when RUNNEL_TEST_BROKER=apache-kafka. Tests keep apart by using
// their own topic and group names.
package gotests

import (
	"bufio"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	bootstrap string
	isRunnel  bool
	// adminAddr is Runnel's admin HTTP listener (/metrics); empty on Apache Kafka.
	adminAddr string
	repo      = func() string { d, _ := filepath.Abs("../.."); return d }()
)

func TestMain(m *testing.M) {
	stop, err := startBroker()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot start the test broker:", err)
		os.Exit(1)
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

func startBroker() (func(), error) {
	switch kind := os.Getenv("RUNNEL_TEST_BROKER"); kind {
	case "", "runnel":
		isRunnel = true
		return startRunnel()
	case "apache-kafka":
		return startApacheKafka()
	default:
		return nil, fmt.Errorf("RUNNEL_TEST_BROKER must be runnel or apache-kafka, not %q", kind)
	}
}

var (
	listenerRE = regexp.MustCompile(`Kafka listener on (\S+):(\d+) `)
	adminRE    = regexp.MustCompile(`admin on ([0-9.]+:\d+)`)
)

func startRunnel() (func(), error) {
	bin := os.Getenv("RUNNEL_BIN")
	if bin == "" {
		bin = filepath.Join(repo, "target/debug/runnel")
	}
	dir, err := os.MkdirTemp("", "runnel-go-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "broker", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"),
		"-o", "group.initial.rebalance.delay.ms=0")
	level := os.Getenv("RUNNEL_TEST_LOG")
	if level == "" {
		level = "warn"
	}
	cmd.Env = append(os.Environ(), "RUNNEL_LOG_LEVEL="+level, "RUNNEL_ADMIN_LISTEN=127.0.0.1:0")
	stderr, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := bufio.NewReader(out)
	line, _ := r.ReadString('\n')
	m := listenerRE.FindStringSubmatch(line)
	if m == nil {
		cmd.Process.Kill()
		log, _ := os.ReadFile(filepath.Join(dir, "stderr.log"))
		return nil, fmt.Errorf("unexpected startup line %q; stderr: %s", line, log)
	}
	bootstrap = m[1] + ":" + m[2]
	if a := adminRE.FindStringSubmatch(line); a != nil {
		adminAddr = a[1]
	}
	go func() { _, _ = r.WriteTo(devNull{}) }()
	return func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				fmt.Fprintln(os.Stderr, "runnel exited with", err)
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
		}
		os.RemoveAll(dir)
	}, nil
}

type devNull struct{}

func (devNull) Write(p []byte) (int, error) { return len(p), nil }

func startApacheKafka() (func(), error) {
	script := filepath.Join(repo, "scripts/apache-kafka")
	cmd := exec.Command(script, "start")
	cmd.Env = append(os.Environ(), "APACHE_KAFKA_REBALANCE_DELAY_MS=0")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("scripts/apache-kafka start: %v: %s", err, out)
	}
	var dir string
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "BOOTSTRAP="); ok {
			bootstrap = v
		}
		if v, ok := strings.CutPrefix(l, "DIR="); ok {
			dir = v
		}
	}
	if bootstrap == "" || dir == "" {
		return nil, fmt.Errorf("no BOOTSTRAP/DIR in %q", out)
	}
	return func() { exec.Command(script, "stop", dir).Run() }, nil
}

// unique returns a name no other test uses.
func unique(prefix string) string {
	return fmt.Sprintf("%s-%08x", prefix, rand.Uint32())
}
