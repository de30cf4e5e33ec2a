package proxy

// pipeline is what a session owes its client and what it sent for it:
// the FIFO of entries (one per command, or per run of plain commands,
// still owed a reply), the send log (the bytes of the commands sent and
// not yet answered, kept to send them again), its offsets, and the
// counts of entries in flight and waiting to be sent again. It knows no
// socket and no lock (the session holds it under mu): the session says
// on which backend connection generation a command goes (gen), the
// pipeline says what is owed, what is resent after -READONLY, and what
// is lost with a connection.
type pipeline struct {
	q           fifo
	sendLog     []byte // bytes sent to the backend, kept until answered
	logBase     int64  // absolute offset of sendLog[0]
	logSent     int64  // absolute offset written so far
	logCmds     int    // commands in sendLog not written yet (a shared connection counts replies)
	silentAfter uint64 // FIFO tail when a command without reply was last sent
	gen         uint64 // generation of the current backend connection
	inflight    int    // entries sent on the current connection and not answered
	unsent      int    // entries waiting to be sent again (after -READONLY)
}

func (p *pipeline) logEnd() int64 { return p.logBase + int64(len(p.sendLog)) }

// compact drops sent bytes no entry may need again.
func (p *pipeline) compact() {
	keep := p.logSent
	for seq := p.q.head; seq < p.q.tail; seq++ {
		if e := p.q.at(seq); e.start >= 0 {
			if e.start < keep {
				keep = e.start
			}
			break
		}
	}
	drop := int(keep - p.logBase)
	switch {
	case drop <= 0:
		return
	case drop == len(p.sendLog):
		p.sendLog = p.sendLog[:0]
		if cap(p.sendLog) > keepBufMax {
			p.sendLog = nil
		}
	case drop >= 64<<10:
		n := copy(p.sendLog, p.sendLog[drop:])
		p.sendLog = p.sendLog[:n]
	default:
		return
	}
	p.logBase += int64(drop)
}

// unsentBytes takes the bytes logged and not yet written, and how many
// replies they are owed.
func (p *pipeline) unsentBytes() ([]byte, int) {
	b := p.sendLog[p.logSent-p.logBase:]
	p.logSent = p.logEnd()
	n := p.logCmds
	p.logCmds = 0
	return b, n
}

// pop ends the head entry: answered.
func (p *pipeline) pop() {
	p.q.pop()
	p.inflight--
}

// pushPlain logs a plain command (one reply) for the current connection.
// Consecutive plain commands of one batch share one FIFO entry (a run of
// cnt commands expecting n more replies): a pipeline costs one entry, not
// one per command. Runs are split into one entry per command (explode)
// before anything needs to address a single command of it (a -READONLY
// retry, a lost connection).
func (p *pipeline) pushPlain(raw []byte, flags uint8) {
	st := p.logEnd()
	p.sendLog = append(p.sendLog, raw...)
	if t := p.q.last(); t != nil && t.cnt > 0 && t.end == st && t.gen == p.gen && t.flags == flags &&
		t.local == nil && p.silentAfter != p.q.tail {
		t.cnt++
		t.n++
		t.end = p.logEnd()
	} else {
		p.q.push(entry{gen: p.gen, n: 1, cnt: 1, flags: flags, start: st, end: p.logEnd()})
		p.inflight++
	}
	p.logCmds++
}

// push logs a command with its entry (owed no reply when silent).
func (p *pipeline) push(e entry, raw []byte, silent bool) {
	if silent {
		p.silentAfter = p.q.tail
	}
	e.gen = p.gen
	e.start = p.logEnd()
	p.sendLog = append(p.sendLog, raw...)
	e.end = p.logEnd()
	if !silent {
		p.q.push(e)
		p.inflight++
		p.logCmds++
	}
}

// pushUnlogged adds the entry of a command written without the log (too
// big to keep: not resent).
func (p *pipeline) pushUnlogged(e entry, silent bool) {
	if silent {
		p.silentAfter = p.q.tail
		return
	}
	e.gen, e.start, e.end = p.gen, -1, -1
	p.q.push(e)
	p.inflight++
}

// explode splits every run of plain commands (pushPlain) into one entry
// per command still waiting for its reply, so that code handling one
// command at a time (a -READONLY retry, a lost connection) sees them one
// by one. Sequence numbers held elsewhere (silentAfter, the discard
// position *discardSeq) are moved with their entries.
func (p *pipeline) explode(discardSeq *uint64) {
	runs := false
	for seq := p.q.head; seq < p.q.tail; seq++ {
		if p.q.at(seq).cnt > 1 {
			runs = true
			break
		}
	}
	if !runs {
		return
	}
	nq := fifo{head: p.q.head, tail: p.q.head}
	silent, discard := p.silentAfter, *discardSeq
	newSilent, newDiscard := p.silentAfter, discard
	for seq := p.q.head; seq < p.q.tail; seq++ {
		if silent == seq {
			newSilent = nq.tail
		}
		if discard == seq {
			newDiscard = nq.tail
		}
		e := *p.q.at(seq)
		if e.cnt <= 1 {
			nq.push(e)
			continue
		}
		cmds := p.sendLog[e.start-p.logBase : e.end-p.logBase]
		for i := int32(0); i < e.cnt-e.n; i++ { // already answered
			cmds = cmds[commandLen(cmds):]
		}
		pos := e.end - int64(len(cmds))
		for i := int32(0); i < e.n; i++ {
			k := commandLen(cmds)
			cmds = cmds[k:]
			nq.push(entry{gen: e.gen, n: 1, cnt: 1, flags: e.flags, start: pos, end: pos + int64(k)})
			pos += int64(k)
		}
		if e.local == nil && e.gen == p.gen {
			p.inflight += int(e.n) - 1
		}
	}
	if silent >= p.q.tail {
		newSilent = nq.tail
	}
	if discard >= p.q.tail {
		newDiscard = nq.tail
	}
	p.q = nq
	p.silentAfter = newSilent
	*discardSeq = newDiscard
}

// startRetry turns a -READONLY answer to the head entry (exploded) into a
// resend: it and everything sent after it on connection beGen go to the
// new master once the route changes. Only when all of them may safely run
// again; then the replies to the ones after it are to be discarded from
// sequence discardSeq on.
func (p *pipeline) startRetry(beGen uint64) (discardSeq uint64, ok bool) {
	e := p.q.at(p.q.head)
	if e.start < 0 || e.flagsInMulti() || !retryable(e.kind) || p.silentAfter > p.q.head {
		return 0, false
	}
	for seq := p.q.head + 1; seq < p.q.tail; seq++ {
		x := p.q.at(seq)
		if x.local != nil {
			continue
		}
		if x.gen != beGen || x.start < 0 || x.flagsInMulti() || !retryable(x.kind) {
			return 0, false
		}
	}
	e.gen = 0
	p.unsent++
	p.inflight--
	return p.q.head + 1, true
}

// discard drops a reply from a demoted master (connection beGen): its
// command waits to be sent again. False: no command was waiting for it.
func (p *pipeline) discard(beGen uint64, discardSeq *uint64) bool {
	for *discardSeq < p.q.tail {
		x := p.q.at(*discardSeq)
		*discardSeq++
		if x.local == nil && x.gen == beGen {
			x.gen = 0
			p.unsent++
			p.inflight--
			return true
		}
	}
	return false
}

// resend logs again, for connection gen, the commands waiting to be sent
// again, in their order; it returns how many.
func (p *pipeline) resend(gen uint64) int {
	n := 0
	for seq := p.q.head; seq < p.q.tail; seq++ {
		e := p.q.at(seq)
		if e.gen != 0 || e.local != nil {
			continue
		}
		from := e.start - p.logBase
		st := p.logEnd()
		p.sendLog = append(p.sendLog, p.sendLog[from:e.end-p.logBase]...)
		e.start, e.end = st, p.logEnd()
		e.gen = gen
		p.inflight++
		p.logCmds++
		n++
	}
	p.unsent = 0
	return n
}

// lose ends connection beGen: the commands still owed a reply from it
// are answered lost (or, when resend, wait to be sent again: a demoted
// master discarding). It returns how many were answered lost.
// *discardSeq is the connection's discard position (see explode). With
// reread set, a single plain command reread says may run twice (a read)
// waits to be sent again too, once: a second loss answers it lost.
func (p *pipeline) lose(beGen uint64, resend bool, lost []byte, discardSeq *uint64, reread func(cmd []byte) bool) int {
	p.explode(discardSeq)
	n := 0
	for seq := p.q.head; seq < p.q.tail; seq++ {
		x := p.q.at(seq)
		if x.local != nil || x.gen != beGen {
			continue
		}
		again := !resend && reread != nil && x.kind == cmdPlain && x.cnt <= 1 && x.start >= 0 &&
			x.flags&(fReread|fInMulti) == 0 && reread(p.sendLog[x.start-p.logBase:x.end-p.logBase])
		if again {
			x.flags |= fReread
		}
		if resend || again {
			x.gen = 0
			p.unsent++
		} else {
			x.local = lost
			n++
		}
	}
	return n
}

// failUnsent answers the commands that waited for a master in vain; it
// returns how many.
func (p *pipeline) failUnsent(reply []byte) int {
	n := 0
	for seq := p.q.head; seq < p.q.tail; seq++ {
		if e := p.q.at(seq); e.gen == 0 && e.local == nil {
			e.local = reply
			n++
		}
	}
	p.unsent = 0
	return n
}
