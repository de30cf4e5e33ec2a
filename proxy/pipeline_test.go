package proxy

import (
	"fmt"
	"testing"
)

// Table tests of the pipeline: no socket, no Redis.

func plainCmd(i int) []byte { return appendCommandStrings(nil, "INCR", fmt.Sprintf("k%d", i)) }

// cmdsOf lists the commands logged for the entries owed a reply.
func cmdsOf(t *testing.T, p *pipeline) []string {
	t.Helper()
	var out []string
	for seq := p.q.head; seq < p.q.tail; seq++ {
		e := p.q.at(seq)
		if e.local != nil {
			out = append(out, "local:"+string(firstLine(e.local)))
			continue
		}
		b := p.sendLog[e.start-p.logBase : e.end-p.logBase]
		for len(b) > 0 {
			k := commandLen(b)
			out = append(out, fmt.Sprintf("g%d:%s", e.gen, b[k-4:k-2]))
			b = b[k:]
		}
	}
	return out
}

func TestPipelineRuns(t *testing.T) {
	p := &pipeline{gen: 1}
	for i := 10; i < 14; i++ {
		p.pushPlain(plainCmd(i), 0)
	}
	if p.q.len() != 1 || p.inflight != 1 || p.q.at(p.q.head).n != 4 {
		t.Fatalf("4 plain commands: %d entries, %d in flight, want one run", p.q.len(), p.inflight)
	}
	if b, n := p.unsentBytes(); n != 4 || len(b) != 4*len(plainCmd(10)) {
		t.Fatalf("unsent: %d bytes, %d replies", len(b), n)
	}
	p.push(entry{n: 1, kind: cmdSelect}, appendCommandStrings(nil, "SELECT", "1"), false)
	p.pushPlain(plainCmd(14), 0)
	p.pushPlain(plainCmd(15), fInMulti) // other flags: a new run
	p.push(entry{n: 1, kind: cmdClient}, appendCommandStrings(nil, "CLIENT", "REPLY", "SKIP"), true)
	p.pushPlain(plainCmd(16), 0) // after a silent command: a new run
	if p.q.len() != 5 {
		t.Fatalf("entries = %d, want 5 (run, SELECT, run, run in MULTI, run after silent)", p.q.len())
	}
}

// A -READONLY answer to the head: it and everything after it on that
// connection are sent again on the next one, in their order.
func TestPipelineResendOrder(t *testing.T) {
	p := &pipeline{gen: 1}
	for i := 10; i < 13; i++ {
		p.pushPlain(plainCmd(i), 0)
	}
	p.push(entry{n: 1, kind: cmdSelect}, appendCommandStrings(nil, "SELECT", "11"), false)
	p.pushPlain(plainCmd(13), 0)
	p.unsentBytes()
	// the first reply arrived (k10 answered), then -READONLY for k11
	p.q.at(p.q.head).n--
	var discardSeq uint64
	p.explode(&discardSeq)
	if got := fmt.Sprint(cmdsOf(t, p)); got != "[g1:11 g1:12 g1:11 g1:13]" {
		t.Fatalf("after explode: %s", got)
	}
	seq, ok := p.startRetry(1)
	if !ok {
		t.Fatal("startRetry refused plain commands and SELECT")
	}
	for i := 0; i < 3; i++ {
		if !p.discard(1, &seq) {
			t.Fatalf("discard %d: no command waiting", i)
		}
	}
	if p.discard(1, &seq) {
		t.Fatal("discarded a reply nobody waits for")
	}
	if p.unsent != 4 || p.inflight != 0 {
		t.Fatalf("unsent %d in flight %d, want 4 and 0", p.unsent, p.inflight)
	}
	p.gen = 2
	if n := p.resend(2); n != 4 {
		t.Fatalf("resent %d, want 4", n)
	}
	if got := fmt.Sprint(cmdsOf(t, p)); got != "[g2:11 g2:12 g2:11 g2:13]" {
		t.Fatalf("resent: %s, want the same order on generation 2", got)
	}
	b, n := p.unsentBytes()
	want := string(plainCmd(11)) + string(plainCmd(12)) + string(appendCommandStrings(nil, "SELECT", "11")) + string(plainCmd(13))
	if string(b) != want || n != 4 {
		t.Fatalf("written on the new connection: %q (%d replies), want %q", b, n, want)
	}
	if p.inflight != 4 || p.unsent != 0 {
		t.Fatalf("in flight %d unsent %d", p.inflight, p.unsent)
	}
}

func TestPipelineNoRetry(t *testing.T) {
	for _, tc := range []struct {
		name string
		fill func(p *pipeline)
	}{
		{"a transaction after it", func(p *pipeline) {
			p.pushPlain(plainCmd(1), 0)
			p.push(entry{n: 1, kind: cmdMulti}, cmdMultiRaw, false)
		}},
		{"a command inside MULTI", func(p *pipeline) { p.pushPlain(plainCmd(1), fInMulti) }},
		{"a subscribe after it", func(p *pipeline) {
			p.pushPlain(plainCmd(1), 0)
			p.push(entry{n: 1, kind: cmdSubscribe}, appendCommandStrings(nil, "SUBSCRIBE", "c"), false)
		}},
		{"a command without reply after it", func(p *pipeline) {
			p.pushPlain(plainCmd(1), 0)
			p.push(entry{n: 1, kind: cmdClient}, appendCommandStrings(nil, "CLIENT", "REPLY", "OFF"), true)
		}},
		{"a command too big to keep", func(p *pipeline) { p.pushUnlogged(entry{n: 1}, false) }},
	} {
		p := &pipeline{gen: 1}
		tc.fill(p)
		if _, ok := p.startRetry(1); ok {
			t.Errorf("%s: resent", tc.name)
		}
	}
}

// The connection is lost in the middle of a run of plain commands: the
// ones answered are gone, each one still owed gets the lost reply, in
// order; with a resend pending (a demoted master) they wait instead.
func TestPipelineLossInRun(t *testing.T) {
	lost := []byte(ReplyLostMaster)
	for _, resend := range []bool{false, true} {
		p := &pipeline{gen: 1}
		for i := 10; i < 15; i++ {
			p.pushPlain(plainCmd(i), 0)
		}
		p.pushPlain(plainCmd(15), fInMulti)
		p.unsentBytes()
		p.q.at(p.q.head).n -= 2 // k10, k11 answered
		var discardSeq uint64
		n := p.lose(1, resend, lost, &discardSeq, nil)
		switch {
		case !resend:
			if n != 4 || p.q.len() != 4 {
				t.Fatalf("lost %d, entries %d: want 4 (k12..k15)", n, p.q.len())
			}
			for seq := p.q.head; seq < p.q.tail; seq++ {
				if string(p.q.at(seq).local) != ReplyLostMaster {
					t.Fatalf("entry %d not answered lost", seq-p.q.head)
				}
			}
		default:
			if n != 0 || p.unsent != 4 {
				t.Fatalf("resend: lost %d unsent %d, want 0 and 4", n, p.unsent)
			}
			p.gen = 2
			p.resend(2)
			if got := fmt.Sprint(cmdsOf(t, p)); got != "[g2:12 g2:13 g2:14 g2:15]" {
				t.Fatalf("resent after the loss: %s", got)
			}
		}
	}
}

// A shared connection dies under a run of INCR and GET: the GETs wait to
// be sent again (in order, after the INCRs' lost replies), the INCRs are
// answered lost; a GET lost a second time is answered lost.
func TestPipelineLossRereads(t *testing.T) {
	lost := []byte(ReplyLostMaster)
	p := &pipeline{gen: 1}
	get := func(i int) []byte { return appendCommandStrings(nil, "GET", fmt.Sprintf("k%d", i)) }
	p.pushPlain(plainCmd(10), 0)
	p.pushPlain(get(11), 0)
	p.pushPlain(plainCmd(12), 0)
	p.pushPlain(get(13), 0)
	p.unsentBytes()
	var discardSeq uint64
	if n := p.lose(1, false, lost, &discardSeq, rereadable); n != 2 || p.unsent != 2 {
		t.Fatalf("lost %d unsent %d, want 2 and 2", n, p.unsent)
	}
	p.gen = 2
	p.resend(2)
	if got := fmt.Sprint(cmdsOf(t, p)); got != "[local:-ERR redhaven: connection to master lost, command outcome unknown g2:11 local:-ERR redhaven: connection to master lost, command outcome unknown g2:13]" {
		t.Fatalf("after the loss: %s", got)
	}
	if n := p.lose(2, false, lost, &discardSeq, rereadable); n != 2 || p.unsent != 0 {
		t.Fatalf("second loss: lost %d unsent %d, want 2 and 0 (a read goes again once)", n, p.unsent)
	}
}

func TestPipelineFailUnsentAndCompact(t *testing.T) {
	p := &pipeline{gen: 1}
	p.pushPlain(plainCmd(1), 0)
	p.unsentBytes()
	var seq uint64
	p.explode(&seq)
	if _, ok := p.startRetry(1); !ok {
		t.Fatal("no retry")
	}
	if n := p.failUnsent([]byte("-MASTERDOWN\r\n")); n != 1 || p.unsent != 0 {
		t.Fatalf("failUnsent %d, unsent %d", n, p.unsent)
	}
	p.q.pop()
	p.compact()
	if len(p.sendLog) != 0 || p.logBase != p.logSent {
		t.Fatalf("log not dropped once nothing is owed: %d bytes, base %d sent %d", len(p.sendLog), p.logBase, p.logSent)
	}
}
