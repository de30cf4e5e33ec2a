package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// respFramer finds where RESP2/RESP3 replies end in a byte stream. It
// keeps its state between calls, so a reply may arrive in any number of
// pieces; bulk payloads are skipped, not scanned. It knows every type
// Redis sends: simple (+ - : _ , # ( ), bulk ($ = !), aggregates (* > ~ %)
// and attributes (|, which prefix the value they describe). Streamed
// aggregates and strings ("$?", "*?") are not supported (Redis never
// sends them).
type respFramer struct {
	state  uint8
	typ    byte
	neg    bool
	digits int
	num    int64
	bulk   int64 // payload + CRLF still to skip
	stack  []respLevel
}

type respLevel struct {
	left int64
	attr bool
}

const (
	fsType = iota // expecting a type byte
	fsLine        // skipping a line up to '\n'
	fsNum         // reading a length or count
	fsBulk        // skipping a bulk payload
)

var errBadReply = errors.New("malformed reply from redis")

// feed consumes bytes of p until one top-level reply ends. It returns the
// number of bytes consumed and whether a reply ended there.
func (f *respFramer) feed(p []byte) (int, bool, error) {
	i := 0
	for i < len(p) {
		switch f.state {
		case fsType:
			t := p[i]
			i++
			f.typ = t
			switch t {
			case '+', '-', ':', '_', ',', '#', '(':
				f.state = fsLine
			case '$', '=', '!', '*', '>', '~', '%', '|':
				f.state, f.num, f.neg, f.digits = fsNum, 0, false, 0
			default:
				return i, false, fmt.Errorf("%w: unexpected type byte %q", errBadReply, t)
			}
		case fsLine:
			j := bytes.IndexByte(p[i:], '\n')
			if j < 0 {
				return len(p), false, nil
			}
			i += j + 1
			f.state = fsType
			if f.valueDone() {
				return i, true, nil
			}
		case fsNum:
			c := p[i]
			i++
			switch {
			case c >= '0' && c <= '9':
				f.num = f.num*10 + int64(c-'0')
				f.digits++
				if f.digits > 18 {
					return i, false, fmt.Errorf("%w: length too long", errBadReply)
				}
			case c == '-' && f.digits == 0 && !f.neg:
				f.neg = true
			case c == '\r':
			case c == '\n':
				if f.digits == 0 {
					return i, false, fmt.Errorf("%w: missing length after %q", errBadReply, f.typ)
				}
				n := f.num
				if f.neg {
					n = -n
				}
				f.state = fsType
				done, err := f.header(n)
				if err != nil || done {
					return i, done, err
				}
			default:
				return i, false, fmt.Errorf("%w: bad length byte %q after %q", errBadReply, c, f.typ)
			}
		case fsBulk:
			take := int64(len(p) - i)
			if take > f.bulk {
				take = f.bulk
			}
			i += int(take)
			f.bulk -= take
			if f.bulk == 0 {
				f.state = fsType
				if f.valueDone() {
					return i, true, nil
				}
			}
		}
	}
	return i, false, nil
}

func (f *respFramer) header(n int64) (bool, error) {
	switch f.typ {
	case '$', '=', '!':
		if n < 0 {
			if n != -1 || f.typ != '$' {
				return false, fmt.Errorf("%w: bad bulk length %d", errBadReply, n)
			}
			return f.valueDone(), nil
		}
		f.bulk = n + 2
		f.state = fsBulk
		return false, nil
	case '*', '>', '~', '%', '|':
		if n < 0 {
			if n != -1 || f.typ != '*' {
				return false, fmt.Errorf("%w: bad aggregate length %d", errBadReply, n)
			}
			return f.valueDone(), nil
		}
		if f.typ == '%' || f.typ == '|' {
			n *= 2
		}
		if n == 0 {
			if f.typ == '|' {
				return false, nil // empty attribute: the value follows
			}
			return f.valueDone(), nil
		}
		f.stack = append(f.stack, respLevel{left: n, attr: f.typ == '|'})
		return false, nil
	}
	return false, fmt.Errorf("%w: unexpected type %q", errBadReply, f.typ)
}

// valueDone records that one value ended at the current depth and says
// whether that completed a top-level reply.
func (f *respFramer) valueDone() bool {
	for len(f.stack) > 0 {
		l := &f.stack[len(f.stack)-1]
		l.left--
		if l.left > 0 {
			return false
		}
		attr := l.attr
		f.stack = f.stack[:len(f.stack)-1]
		if attr {
			return false // an attribute describes the value that follows it
		}
	}
	return true
}

// mid says whether the framer is inside a reply.
func (f *respFramer) mid() bool { return f.state != fsType || len(f.stack) > 0 }

// respElem reads one simple element (bulk, simple string, integer, null)
// at the start of b. It returns its bytes and the rest of b.
func respElem(b []byte) (val []byte, null bool, rest []byte, ok bool) {
	j := bytes.IndexByte(b, '\n')
	if len(b) < 3 || j < 2 || b[j-1] != '\r' {
		return nil, false, nil, false
	}
	line := b[1 : j-1]
	switch b[0] {
	case '+', ':':
		return line, false, b[j+1:], true
	case '_':
		return nil, true, b[j+1:], true
	case '$':
		n, err := strconv.Atoi(string(line))
		if err != nil {
			return nil, false, nil, false
		}
		if n < 0 {
			return nil, true, b[j+1:], true
		}
		if len(b) < j+1+n+2 {
			return nil, false, nil, false
		}
		return b[j+1 : j+1+n], false, b[j+1+n+2:], true
	}
	return nil, false, nil, false
}

// respAggHead reads an array or push header ('*' or '>').
func respAggHead(b []byte) (n int, rest []byte, ok bool) {
	if len(b) < 4 || (b[0] != '*' && b[0] != '>') {
		return 0, nil, false
	}
	j := bytes.IndexByte(b, '\n')
	if j < 2 || b[j-1] != '\r' {
		return 0, nil, false
	}
	n, err := strconv.Atoi(string(b[1 : j-1]))
	if err != nil {
		return 0, nil, false
	}
	return n, b[j+1:], true
}

// pubsubKind names the pub/sub reply kinds redhaven follows.
type pubsubKind uint8

const (
	psNone pubsubKind = iota
	psMessage
	psSubscribe
	psPsubscribe
	psSsubscribe
	psUnsubscribe
	psPunsubscribe
	psSunsubscribe
)

// pubsubFrame looks at the first element of an array/push reply and says
// whether it is a pub/sub message or a (un)subscribe confirmation.
func pubsubFrame(frame []byte) pubsubKind {
	n, rest, ok := respAggHead(frame)
	if !ok || n < 1 || len(rest) == 0 || (rest[0] != '$' && rest[0] != '+') {
		return psNone
	}
	v, _, _, ok := respElem(rest)
	if !ok {
		return psNone
	}
	switch string(v) {
	case "message", "pmessage", "smessage":
		return psMessage
	case "subscribe":
		return psSubscribe
	case "psubscribe":
		return psPsubscribe
	case "ssubscribe":
		return psSsubscribe
	case "unsubscribe":
		return psUnsubscribe
	case "punsubscribe":
		return psPunsubscribe
	case "sunsubscribe":
		return psSunsubscribe
	}
	return psNone
}

// confirmation parses a (un)subscribe confirmation: name (nil when null)
// and the subscription count Redis reports.
func confirmation(frame []byte) (name []byte, null bool, count int64, ok bool) {
	n, rest, ok := respAggHead(frame)
	if !ok || n != 3 {
		return nil, false, 0, false
	}
	if _, _, rest, ok = respElem(rest); !ok {
		return nil, false, 0, false
	}
	if name, null, rest, ok = respElem(rest); !ok {
		return nil, false, 0, false
	}
	c, _, _, ok := respElem(rest)
	if !ok {
		return nil, false, 0, false
	}
	count, err := strconv.ParseInt(string(c), 10, 64)
	return name, null, count, err == nil
}

// appendCommand encodes a command as a RESP array of bulk strings.
func appendCommand(b []byte, args ...[]byte) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, '\r', '\n')
		b = append(b, a...)
		b = append(b, '\r', '\n')
	}
	return b
}

func appendCommandStrings(b []byte, args ...string) []byte {
	bs := make([][]byte, len(args))
	for i, a := range args {
		bs[i] = []byte(a)
	}
	return appendCommand(b, bs...)
}
