package proxy

import (
	"bytes"
	"sync"
)

const (
	readBufSize    = 16 << 10 // backend read buffer
	clientBufSize  = 4 << 10  // client read buffer to start with; grows with the requests (idle clients cost memory)
	keepBufMax     = 1 << 20  // buffers above this are dropped when empty
	inlineMax      = 64 << 10 // Redis's PROTO_INLINE_MAX_SIZE
	maxMultibulk   = 1 << 20
	unauthMaxArgs  = 10    // as Redis, before AUTH
	unauthMaxBulk  = 16384 // as Redis, before AUTH
	headerMaxBytes = 32
)

var (
	errInvalidMultibulk = &errProtocol{"invalid multibulk length"}
	errInvalidBulk      = &errProtocol{"invalid bulk length"}
	errInlineTooBig     = &errProtocol{"too big inline request"}
	errUnauthMultibulk  = &errProtocol{"unauthenticated multibulk length"}
	errUnauthBulk       = &errProtocol{"unauthenticated bulk length"}
)

// requestReader buffers client input and frames it into commands before
// they are parsed (by redcon.Parse). It validates lengths as the headers
// arrive, so a request above max is refused before its payload is read,
// and it resumes where it stopped, so a big command is scanned once.
type requestReader struct {
	buf        []byte
	bufp       *[]byte // buf came from clientBufs; nil: buf is its own
	start, end int
	max        int64

	// scan state of the command at buf[start:]
	// use counts the bytes of a grown buffer against proxy.max_buffer_memory
	// (budget.go); nil: not counted
	use *bufferUse

	off      int // validated bytes of it
	argsLeft int // -1: multibulk header not read yet
	pending  int // payload length of the bulk whose header ends at off; -1: none
	inline   bool
	count    int // arguments of the multibulk
	nameOff  int // the first argument (command name) within the command
	nameLen  int
}

func newRequestReader(max int64) requestReader {
	return requestReader{max: max, argsLeft: -1, pending: -1}
}

// clientBufs lends read buffers to sessions while they have input: an idle
// client holds none (memory per idle client, make bench-idle).
var clientBufs = sync.Pool{New: func() any { b := make([]byte, clientBufSize); return &b }}

// release lends the buffer back when everything read was consumed.
func (r *requestReader) release() {
	if r.start != r.end || r.bufp == nil {
		return
	}
	r.start, r.end = 0, 0
	r.buf = nil
	clientBufs.Put(r.bufp)
	r.bufp = nil
}

func (r *requestReader) resetScan() {
	r.off, r.argsLeft, r.pending, r.inline = 0, -1, -1, false
}

// hold records that the buffer, not a pooled one, is n bytes (0: none).
func (r *requestReader) hold(n int) {
	if r.use != nil {
		r.use.setInput(int64(n))
	}
}

// buffered says whether unprocessed input is buffered.
func (r *requestReader) buffered() bool { return r.end > r.start }

// space returns where to read the next bytes. The buffer grows with the
// bytes received (doubling when full), never ahead for a declared length:
// 45 bytes announcing a 512 MiB value cost the 4 KiB they arrive in.
func (r *requestReader) space() []byte {
	if r.buf == nil {
		r.bufp = clientBufs.Get().(*[]byte)
		r.buf = *r.bufp
	}
	if r.start == r.end {
		r.start, r.end = 0, 0
		if len(r.buf) > keepBufMax {
			r.buf, r.bufp = nil, nil
			r.hold(0)
			return r.space()
		}
	}
	if len(r.buf)-r.end >= 512 {
		return r.buf[r.end:]
	}
	if r.start > 0 {
		copy(r.buf, r.buf[r.start:r.end])
		r.end -= r.start
		r.start = 0
	}
	if len(r.buf)-r.end < 512 {
		n := 2 * len(r.buf)
		if r.pending >= 0 {
			// a bulk whose bytes are arriving: no more than it needs (and
			// room for the next header), so a 512 MiB value takes 512 MiB,
			// not the 1 GiB of the next doubling
			if need := r.off + r.pending + 2 + 4096; need > len(r.buf) && need < n {
				n = need
			}
		}
		nb := make([]byte, n)
		copy(nb, r.buf[:r.end])
		if r.bufp != nil {
			clientBufs.Put(r.bufp)
			r.bufp = nil
		}
		r.buf = nb
		r.hold(len(nb))
	}
	return r.buf[r.end:]
}

// peek returns the next complete command (raw RESP, or an inline line)
// without consuming it; nil when more input is needed.
func (r *requestReader) peek(unauth bool) (raw []byte, inline bool, err error) {
	for {
		b := r.buf[r.start:r.end]
		if len(b) == 0 {
			return nil, false, nil
		}
		if r.argsLeft < 0 && !r.inline && b[0] != '*' {
			r.inline = true
		}
		if r.inline {
			if r.off > 0 && b[r.off-1] == '\n' { // peeked before, not consumed
				return b[:r.off], true, nil
			}
			j := bytes.IndexByte(b[r.off:], '\n')
			if j < 0 {
				if len(b) > inlineMax {
					return nil, false, errInlineTooBig
				}
				r.off = len(b)
				return nil, false, nil
			}
			n := r.off + j + 1
			if n > inlineMax {
				return nil, false, errInlineTooBig
			}
			r.off = n
			return b[:n], true, nil
		}
		if r.argsLeft < 0 {
			j := bytes.IndexByte(b, '\n')
			if j < 0 {
				if len(b) > headerMaxBytes {
					return nil, false, errInvalidMultibulk
				}
				return nil, false, nil
			}
			if j < 2 || b[j-1] != '\r' {
				return nil, false, errInvalidMultibulk
			}
			count, ok := parseLen(b[1 : j-1])
			if !ok || count > maxMultibulk {
				return nil, false, errInvalidMultibulk
			}
			if count <= 0 { // "*0" and "*-1": nothing, as Redis
				r.start += j + 1
				r.resetScan()
				continue
			}
			if unauth && count > unauthMaxArgs {
				return nil, false, errUnauthMultibulk
			}
			if int64(j+1)+int64(count)*6 > r.max {
				return nil, false, errInvalidMultibulk // as Redis for a count it will not take
			}
			r.argsLeft, r.count, r.off = count, count, j+1
		}
		for r.argsLeft > 0 {
			if r.pending >= 0 {
				end := r.off + r.pending + 2
				if end > len(b) {
					return nil, false, nil
				}
				if b[end-2] != '\r' || b[end-1] != '\n' {
					return nil, false, errInvalidBulk
				}
				r.off, r.pending = end, -1
				r.argsLeft--
				continue
			}
			if r.off >= len(b) {
				return nil, false, nil
			}
			if b[r.off] != '$' {
				return nil, false, &errProtocol{"expected '$', got '" + string(b[r.off]) + "'"}
			}
			j, size := bulkHeader(b[r.off:])
			if j < 0 {
				j = bytes.IndexByte(b[r.off:], '\n')
				if j < 0 {
					if len(b)-r.off > headerMaxBytes {
						return nil, false, errInvalidBulk
					}
					return nil, false, nil
				}
				if j < 2 || b[r.off+j-1] != '\r' {
					return nil, false, errInvalidBulk
				}
				var ok bool
				size, ok = parseLen(b[r.off+1 : r.off+j-1])
				if !ok || size < 0 {
					return nil, false, errInvalidBulk
				}
			}
			if unauth && size > unauthMaxBulk {
				return nil, false, errUnauthBulk
			}
			if int64(size) > r.max {
				return nil, false, errInvalidBulk // as Redis above proto-max-bulk-len
			}
			if int64(r.off+j+1)+int64(size)+2 > r.max {
				return nil, false, &errTooLarge{r.max}
			}
			r.off += j + 1
			r.pending = size
			if r.argsLeft == r.count {
				r.nameOff, r.nameLen = r.off, size
			}
		}
		return b[:r.off], false, nil
	}
}

// bulkHeader reads the common form of a bulk header, "$<1-10 digits>\r\n",
// at the start of b without a search: the index of its '\n' and the
// length; j < 0 for anything else (peek's general path decides).
func bulkHeader(b []byte) (j, size int) {
	i := 1
	for ; i < len(b) && i <= 10; i++ {
		c := b[i]
		if c < '0' || c > '9' {
			break
		}
		size = size*10 + int(c-'0')
	}
	if i == 1 || i+1 >= len(b) || b[i] != '\r' || b[i+1] != '\n' {
		return -1, 0
	}
	return i + 1, size
}

// name is the command name of the multibulk command peek returned.
func (r *requestReader) name(raw []byte) []byte { return raw[r.nameOff : r.nameOff+r.nameLen] }

// consume drops the command peek returned.
func (r *requestReader) consume(n int) {
	r.start += n
	r.resetScan()
	if r.start == r.end {
		r.start, r.end = 0, 0
	}
}

// parseLen parses a decimal length (optionally negative); at most 10 digits.
func parseLen(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 11 {
		return 0, false
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}
