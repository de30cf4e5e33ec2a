// Package probe is the one write probe of redhaven's failover tests and
// benchmarks: the Redis client settings, the per-write log, and the
// analysis that turns a log into figures. The Docker end-to-end tests
// (e2e, through e2e/writer) and the loopback failover benchmark
// (e2e/bench/failover-probe) both record and analyse writes with it, so a
// figure means the same thing in every report.
package probe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// NewClient returns a client with one connection, no hidden retries, RESP2
// and no CLIENT SETINFO or maintenance notifications: every command the
// probe counts is one command on the wire. Callers build a fresh client
// after a connection error so that go-redis' dial back-off never adds
// latency of its own to a measurement.
func NewClient(addr string, dialTimeout, timeout time.Duration, onConnect func(context.Context, *redis.Conn) error) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:                     addr,
		Protocol:                 2,
		DisableIdentity:          true,
		MaxRetries:               -1,
		DialTimeout:              dialTimeout,
		DialerRetries:            1,
		ReadTimeout:              timeout,
		WriteTimeout:             timeout,
		PoolSize:                 1,
		PoolTimeout:              timeout,
		ConnMaxIdleTime:          -1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		OnConnect:                onConnect,
	})
}

// ErrClass names the kind of error: the Redis error code (ERR, READONLY,
// MASTERDOWN, ...) or the network failure (eof, reset, refused, timeout...).
func ErrClass(err error) string {
	if err == nil {
		return ""
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		if w := strings.Fields(rerr.Error()); len(w) > 0 {
			return w[0]
		}
		return "redis"
	}
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.EPIPE):
		return "epipe"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "unreachable"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "other"
}

// IsRedisError tells a reply error (the connection is fine) from a
// connection failure (the client should be rebuilt).
func IsRedisError(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr)
}

// Record is one write's outcome.
type Record struct {
	Seq        int64 // SET <prefix>:Seq Seq
	Send, Done int64 // Unix ns
	OK         bool
	Port       int64 // backend port that answered, when known (0 = unknown)
	Class, Msg string
	Conn       int // connection number of the writer (1, 2, ...)
}

// Header is the first line of a write log.
const Header = "seq,send_ns,done_ns,ok,port,err_class,err_msg,conn"

// Format writes r as one line of a write log.
func (r Record) Format(w io.Writer) {
	ok := 0
	if r.OK {
		ok = 1
	}
	clean := strings.NewReplacer(",", ";", "\n", " ", "\r", " ").Replace(r.Msg)
	fmt.Fprintf(w, "%d,%d,%d,%d,%d,%s,%s,%d\n", r.Seq, r.Send, r.Done, ok, r.Port, r.Class, clean, r.Conn)
}

// ReadLog reads a write log written with Header and Format.
func ReadLog(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var recs []Record
	for line := 1; sc.Scan(); line++ {
		if line == 1 {
			if sc.Text() != Header {
				return nil, fmt.Errorf("%s: header %q, want %q", path, sc.Text(), Header)
			}
			continue
		}
		fl := strings.Split(sc.Text(), ",")
		if len(fl) != 8 {
			return nil, fmt.Errorf("%s:%d: %d fields, want 8: %q", path, line, len(fl), sc.Text())
		}
		var r Record
		r.Seq, _ = strconv.ParseInt(fl[0], 10, 64)
		r.Send, _ = strconv.ParseInt(fl[1], 10, 64)
		r.Done, _ = strconv.ParseInt(fl[2], 10, 64)
		r.OK = fl[3] == "1"
		r.Port, _ = strconv.ParseInt(fl[4], 10, 64)
		r.Class, r.Msg = fl[5], fl[6]
		r.Conn, _ = strconv.Atoi(fl[7])
		recs = append(recs, r)
	}
	return recs, sc.Err()
}

// Present asks a Redis node (the final master, directly) which of the
// given sequence numbers hold their own value under prefix (MGET in chunks).
func Present(ctx context.Context, c *redis.Client, prefix string, seqs []int64) (map[int64]bool, error) {
	present := map[int64]bool{}
	for i := 0; i < len(seqs); i += 500 {
		chunk := seqs[i:min(i+500, len(seqs))]
		keys := make([]string, len(chunk))
		for j, s := range chunk {
			keys[j] = prefix + ":" + strconv.FormatInt(s, 10)
		}
		vals, err := c.MGet(ctx, keys...).Result()
		if err != nil {
			return nil, fmt.Errorf("MGET: %w", err)
		}
		for j, v := range vals {
			if s, ok := v.(string); ok && s == strconv.FormatInt(chunk[j], 10) {
				present[chunk[j]] = true
			}
		}
	}
	return present, nil
}

// Seqs lists the sequence numbers of a log.
func Seqs(recs []Record) []int64 {
	out := make([]int64, len(recs))
	for i, r := range recs {
		out[i] = r.Seq
	}
	return out
}

// Window says where the faults of a run are.
type Window struct {
	Fault  int64 // Unix ns of the fault (e.g. the kill -9); 0 = none
	Phase2 int64 // Unix ns of a second event (e.g. the old master restarted); 0 = none
	// Phase2Port is the backend port of the restarted old master: writes it
	// acknowledged after Phase2 are writes on a deposed master.
	Phase2Port int64
}

// Figures are the numbers of one writer's run.
type Figures struct {
	Window                Window
	Writes, Acked, Errors int
	Classes               map[string]int // error class -> count, whole run
	MaxErrorsPerConn      int
	// Lost are acknowledged writes not on the final master; LostBefore and
	// LostAfter split them by send time against the fault, LostFailover
	// counts those sent before Phase2 (the failover itself).
	Lost                                []int64
	LostBefore, LostAfter, LostFailover int
	ErroredApplied                      int // errored but on the final master (allowed: outcome unknown)

	// From the fault to Phase2 (or the end):
	// Unix ns, 0 when there is none: the last ack of a write sent before
	// the fault, the first error and the first ack of writes sent after
	// it (fault -> FirstAckAfter is the unavailability).
	LastAckBefore, FirstErrorAfter, FirstAckAfter int64
	MaxStallMs                                    float64 // longest time between two acks from 1 s before the fault on
	ErrorsAfter                                   int
	ClassesAfter                                  map[string]int
	PortsAfter                                    map[string]int // acks per backend port

	// After Phase2:
	Phase2Acked, Phase2Errors, Phase2Lost int
	Phase2ViaOld, Phase2ViaOldLost        int
	Phase2Classes, Phase2Ports            map[string]int
}

// Analyze computes a writer's figures. present is the set of sequence
// numbers found on the final master (nil: presence unknown, no loss counts).
func Analyze(recs []Record, w Window, present map[int64]bool) Figures {
	f := Figures{
		Window:  w,
		Classes: map[string]int{}, ClassesAfter: map[string]int{}, PortsAfter: map[string]int{},
		Phase2Classes: map[string]int{}, Phase2Ports: map[string]int{},
	}
	perConn := map[int]int{}
	var prevAck int64
	for _, r := range recs {
		f.Writes++
		lost := present != nil && r.OK && !present[r.Seq]
		if r.OK {
			f.Acked++
			if prevAck != 0 && r.Done > w.Fault-int64(time.Second) {
				f.MaxStallMs = max(f.MaxStallMs, float64(r.Done-prevAck)/1e6)
			}
			prevAck = r.Done
		} else {
			f.Errors++
			f.Classes[r.Class]++
			perConn[r.Conn]++
			f.MaxErrorsPerConn = max(f.MaxErrorsPerConn, perConn[r.Conn])
			if present[r.Seq] {
				f.ErroredApplied++
			}
		}
		if lost {
			f.Lost = append(f.Lost, r.Seq)
			if w.Fault > 0 && r.Send < w.Fault {
				f.LostBefore++
			} else {
				f.LostAfter++
			}
			if w.Phase2 == 0 || r.Send < w.Phase2 {
				f.LostFailover++
			}
		}
		switch {
		case r.Send < w.Fault:
			if r.OK {
				f.LastAckBefore = r.Done
			}
		case w.Phase2 == 0 || r.Send < w.Phase2:
			if r.OK {
				if f.FirstAckAfter == 0 {
					f.FirstAckAfter = r.Done
				}
				f.PortsAfter[strconv.FormatInt(r.Port, 10)]++
			} else {
				f.ErrorsAfter++
				f.ClassesAfter[r.Class]++
				if f.FirstErrorAfter == 0 {
					f.FirstErrorAfter = r.Done
				}
			}
		default: // after Phase2
			if r.OK {
				f.Phase2Acked++
				f.Phase2Ports[strconv.FormatInt(r.Port, 10)]++
				if r.Port == w.Phase2Port {
					f.Phase2ViaOld++
					if lost {
						f.Phase2ViaOldLost++
					}
				}
				if lost {
					f.Phase2Lost++
				}
			} else {
				f.Phase2Errors++
				f.Phase2Classes[r.Class]++
			}
		}
	}
	return f
}

// FirstAckMs is the unavailability in milliseconds: from the fault to the
// first ack of a write sent after it; -1 when no such write was acked.
func (f Figures) FirstAckMs() float64 {
	if f.FirstAckAfter == 0 {
		return -1
	}
	return float64(f.FirstAckAfter-f.Window.Fault) / 1e6
}

// MsAfter renders t relative to the fault in milliseconds ("12.3"), or
// "NA" when t is 0 (no such write).
func (w Window) MsAfter(t int64) string {
	if t == 0 {
		return "NA"
	}
	return fmt.Sprintf("%.1f", float64(t-w.Fault)/1e6)
}

// ClassString renders an error-class count map as "a:1,b:2" (sep between
// entries), or empty when there is none.
func ClassString(m map[string]int, sep string) string {
	ks := make([]string, 0, len(m))
	for k, v := range m {
		ks = append(ks, fmt.Sprintf("%s:%d", k, v))
	}
	sort.Strings(ks)
	return strings.Join(ks, sep)
}

// ErrorSamples lists up to n distinct error texts of a log.
func ErrorSamples(recs []Record, n int) []string {
	var out []string
	for _, r := range recs {
		s := r.Class + ": " + r.Msg
		if !r.OK && len(out) < n && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// Writer sends SET <Prefix>:N N every Interval on one connection and
// reports every outcome: the write loop of e2e/writer and of the failover
// benchmark's probe.
type Writer struct {
	Addr, Prefix         string
	Interval             time.Duration
	DialTimeout, Timeout time.Duration
	ReconnectEvery       time.Duration // > 0: a new connection when the current one is this old
	RenewAfterEveryError bool          // a new connection after a reply error too, not only after a connection error
	BackendPort          bool          // learn the answering backend's port with INFO server on each connection
}

// Run writes until ctx ends or done returns true; done sees each record.
func (w Writer) Run(ctx context.Context, done func(Record) bool) {
	var port int64
	conn := 0
	onConnect := func(ctx context.Context, cn *redis.Conn) error {
		port = 0
		if !w.BackendPort {
			return nil
		}
		s, err := cn.Info(ctx, "server").Result()
		if err != nil {
			if IsRedisError(err) {
				return nil // INFO refused: the port stays unknown
			}
			return err
		}
		for _, line := range strings.Split(s, "\n") {
			if v, ok := strings.CutPrefix(line, "tcp_port:"); ok {
				port, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			}
		}
		return nil
	}
	var client *redis.Client
	var born time.Time
	renew := func() {
		if client != nil {
			_ = client.Close()
		}
		client = NewClient(w.Addr, w.DialTimeout, w.Timeout, onConnect)
		born = time.Now()
		conn++
	}
	renew()
	defer func() { _ = client.Close() }()
	tick := time.NewTicker(w.Interval)
	defer tick.Stop()
	for seq := int64(1); ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if w.ReconnectEvery > 0 && time.Since(born) >= w.ReconnectEvery {
			renew()
		}
		s := strconv.FormatInt(seq, 10)
		r := Record{Seq: seq, Send: time.Now().UnixNano(), Conn: conn}
		err := client.Set(context.WithoutCancel(ctx), w.Prefix+":"+s, s, 0).Err() // a stop never cuts a write short
		r.Done, r.OK, r.Port = time.Now().UnixNano(), err == nil, port
		if err != nil {
			r.Class, r.Msg = ErrClass(err), err.Error()
			if w.RenewAfterEveryError || !IsRedisError(err) {
				renew() // no go-redis dial back-off in the measurement
			}
		}
		if done(r) {
			return
		}
	}
}
