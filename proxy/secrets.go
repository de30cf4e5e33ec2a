package proxy

import (
	"strconv"
)

// secretConfigKeys are the CONFIG GET values a client of the proxy never
// sees in proxy.password mode: Redis's own password (the proxy's
// redis.password) and the replication password.
var secretConfigKeys = []string{"requirepass", "masterauth"}

// replyConfigGetInMulti refuses CONFIG GET inside MULTI in proxy.password
// mode.
const replyConfigGetInMulti = "-ERR redhaven: CONFIG GET is not allowed inside MULTI when proxy.password is set (its reply could not hide the passwords)\r\n"

// replyConfigTooBig answers a CONFIG GET whose reply is too big to filter.
const replyConfigTooBig = "-ERR redhaven: CONFIG GET reply too large or unreadable to hide the passwords in it; ask for fewer parameters\r\n"

// hideConfigSecrets appends to dst the CONFIG GET reply frame (a flat
// array or, in RESP3, a map of name, value) with the values of
// secretConfigKeys replaced by empty strings. A frame it cannot read is
// replaced by an error, never passed on.
func hideConfigSecrets(dst, frame []byte) []byte {
	if len(frame) == 0 || (frame[0] != '*' && frame[0] != '%') {
		return append(dst, frame...)
	}
	n, i, ok := respHeader(frame, 0)
	if !ok {
		return append(dst, replyConfigTooBig...)
	}
	pairs := n
	if frame[0] == '*' {
		pairs = n / 2
	}
	out := append(dst, frame[:i]...)
	for p := 0; p < pairs; p++ {
		name, next, ok := respBulk(frame, i)
		if !ok {
			return append(dst, replyConfigTooBig...)
		}
		_, end, ok := respBulk(frame, next)
		if !ok {
			return append(dst, replyConfigTooBig...)
		}
		out = append(out, frame[i:next]...)
		if isSecretKey(name) {
			out = append(out, "$0\r\n\r\n"...)
		} else {
			out = append(out, frame[next:end]...)
		}
		i = end
	}
	return append(out, frame[i:]...)
}

func isSecretKey(name []byte) bool {
	for _, k := range secretConfigKeys {
		if equalFold(name, k) {
			return true
		}
	}
	return false
}

// respHeader reads an aggregate header ("*3\r\n") at i: the count and
// where its elements start.
func respHeader(b []byte, i int) (n, next int, ok bool) {
	j := i + 1
	for j < len(b) && b[j] != '\r' {
		j++
	}
	if j+1 >= len(b) || b[j+1] != '\n' {
		return 0, 0, false
	}
	n, err := strconv.Atoi(string(b[i+1 : j]))
	if err != nil || n < 0 {
		return 0, 0, false
	}
	return n, j + 2, true
}

// respBulk reads a bulk string ("$3\r\nabc\r\n") at i.
func respBulk(b []byte, i int) (val []byte, next int, ok bool) {
	if i >= len(b) || b[i] != '$' {
		return nil, 0, false
	}
	n, start, ok := respHeader(b, i)
	if !ok || start+n+2 > len(b) {
		return nil, 0, false
	}
	return b[start : start+n], start + n + 2, true
}

// monitorLine says whether a status reply is a line of MONITOR output
// ("+1700000000.123456 [0 127.0.0.1:5000] \"get\" \"k\""), not the reply
// to a command of the monitoring client.
func monitorLine(frame []byte) bool {
	i, digits := 1, 0
	for ; i < len(frame) && frame[i] >= '0' && frame[i] <= '9'; i++ {
		digits++
	}
	if digits == 0 || i >= len(frame) || frame[i] != '.' {
		return false
	}
	i++
	for digits = 0; i < len(frame) && frame[i] >= '0' && frame[i] <= '9'; i++ {
		digits++
	}
	return digits > 0 && i+1 < len(frame) && frame[i] == ' ' && frame[i+1] == '['
}
