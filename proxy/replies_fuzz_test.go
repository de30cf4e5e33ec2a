package proxy

import (
	"testing"
)

// frameAll frames b with one respFramer fed step bytes at a time: the
// ends of the complete replies, and whether framing failed.
func frameAll(b []byte, step int) (ends []int, failed bool) {
	var f respFramer
	pos := 0
	for pos < len(b) {
		chunk := b[pos:min(len(b), pos+step)]
		k, done, err := f.feed(chunk)
		pos += k
		if err != nil {
			return ends, true
		}
		if done {
			ends = append(ends, pos)
		}
	}
	return ends, false
}

// FuzzReplyFramer feeds arbitrary bytes as if Redis sent them, through
// the reply side: the framer (whole and in pieces: same replies, same
// failure), the fast path's simpleReplyLen (a length it gives is the
// framer's), the CONFIG GET filter and the MONITOR line test. Nothing may
// panic, and a filtered CONFIG GET reply is still one complete reply
// (TestHideConfigSecrets checks what it hides).
func FuzzReplyFramer(f *testing.F) {
	for _, s := range []string{
		"+OK\r\n", "-ERR x\r\n", ":1\r\n", "$3\r\nabc\r\n", "$-1\r\n", "_\r\n",
		"*2\r\n$3\r\nfoo\r\n:1\r\n", "%1\r\n+a\r\n+b\r\n", ">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n",
		"-UNBLOCKED the stream key no longer exists\r\n", "-READONLY You can't write against a read only replica.\r\n",
		"*4\r\n$11\r\nrequirepass\r\n$6\r\nsecret\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n",
		"+1796523701.052795 [0 127.0.0.1:57048] \"set\" \"a\" \"b\"\r\n",
		"*-1\r\n", "$5\r\nab", "*3\r\n", "$99999999999999999999\r\n", "|1\r\n+a\r\n+b\r\n+OK\r\n",
	} {
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		whole, failedWhole := frameAll(in, len(in)+1)
		pieces, failedPieces := frameAll(in, int(step%16)+1)
		if failedWhole != failedPieces || len(whole) != len(pieces) {
			t.Fatalf("whole %v (failed %v) != pieces %v (failed %v)", whole, failedWhole, pieces, failedPieces)
		}
		for i := range whole {
			if whole[i] != pieces[i] {
				t.Fatalf("whole %v != pieces %v", whole, pieces)
			}
		}
		if len(in) > 0 {
			if k := simpleReplyLen(in); k > 0 {
				var fr respFramer
				n, done, err := fr.feed(in)
				if err != nil || !done || n != k {
					t.Fatalf("simpleReplyLen %d, framer %d %v %v", k, n, done, err)
				}
			}
		}
		_ = monitorLine(in)
		start := 0
		for _, end := range whole {
			frame := in[start:end]
			start = end
			out := hideConfigSecrets(nil, frame)
			ends, failed := frameAll(out, len(out)+1)
			if failed || len(ends) != 1 || ends[0] != len(out) {
				t.Fatalf("hideConfigSecrets(%q) = %q: not one reply", frame, out)
			}
		}
	})
}

func TestHideConfigSecrets(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"*4\r\n$11\r\nrequirepass\r\n$6\r\nsecret\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n",
			"*4\r\n$11\r\nrequirepass\r\n$0\r\n\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n"},
		{"%1\r\n$10\r\nMASTERAUTH\r\n$2\r\npw\r\n", "%1\r\n$10\r\nMASTERAUTH\r\n$0\r\n\r\n"},
		{"*0\r\n", "*0\r\n"},
		{"*2\r\n+requirepass\r\n$2\r\npw\r\n", replyConfigTooBig},
	} {
		if got := string(hideConfigSecrets(nil, []byte(tc.in))); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.in, got, tc.want)
		}
	}
}
