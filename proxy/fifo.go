package proxy

// entry is one command of a session that still owes the client a reply,
// in the order the client sent it.
type entry struct {
	gen   uint64  // backend connection it was sent on; 0: not sent (waiting for a master)
	start int64   // its bytes in the session's send log (to send it again); -1: not kept
	end   int64   //
	n     int32   // replies still expected from Redis; -1: count when the first arrives
	cnt   int32   // plain commands in the entry (forwardPlainLocked); >1: a run, see pipeline.explode
	kind  cmdKind //
	flags uint8   //
	local []byte  // the reply, when the proxy answers (or already answered) it
	raw   []byte  // copy of the command, for commands that change session state
}

const (
	fInMulti     uint8 = 1 << iota // sent between MULTI and EXEC
	fCloseAfter                    // close the connection after this reply
	fExecNull                      // EXEC sent as DISCARD: answer a null reply (WATCH lost)
	fExecMoved                     // EXEC sent as DISCARD: answer ReplyExecAbortMoved
	fExecDirty                     // EXEC sent as DISCARD: answer ReplyExecAbortDirty
	fHidden                        // sent by the proxy (HELLO 3 after AUTH): the reply is not the client's
	fHideSecrets                   // CONFIG GET in proxy.password mode: password values blanked (secrets.go)
	fReread                        // a read sent again after its shared connection died (once only)
)

// fifo is a growable ring of entries addressed by sequence numbers.
type fifo struct {
	buf        []entry
	head, tail uint64
}

func (q *fifo) len() int { return int(q.tail - q.head) }

func (q *fifo) at(seq uint64) *entry { return &q.buf[seq&uint64(len(q.buf)-1)] }

func (q *fifo) push(e entry) {
	if q.len() == len(q.buf) {
		n := 2 * len(q.buf)
		if n == 0 {
			n = 8 // a pipeline of plain commands is one entry (a run)
		}
		nb := make([]entry, n)
		for s := q.head; s < q.tail; s++ {
			nb[s&uint64(n-1)] = *q.at(s)
		}
		q.buf = nb
	}
	*q.at(q.tail) = e
	q.tail++
}

// last is the most recent entry, nil when empty.
func (q *fifo) last() *entry {
	if q.tail == q.head {
		return nil
	}
	return q.at(q.tail - 1)
}

func (q *fifo) pop() {
	*q.at(q.head) = entry{}
	q.head++
}
