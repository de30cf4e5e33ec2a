package proxy

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/tidwall/redcon"
)

func TestRespFramer(t *testing.T) {
	cases := []struct {
		name  string
		in    string // one or more replies
		sizes []int  // length of each reply
	}{
		{"simple", "+OK\r\n", []int{5}},
		{"error", "-READONLY You can't write\r\n", []int{27}},
		{"int", ":42\r\n", []int{5}},
		{"bulk", "$3\r\nabc\r\n", []int{9}},
		{"bulk with crlf inside", "$4\r\na\r\nb\r\n", []int{10}},
		{"null bulk", "$-1\r\n", []int{5}},
		{"null array", "*-1\r\n", []int{5}},
		{"empty array", "*0\r\n", []int{4}},
		{"nested", "*2\r\n*1\r\n:1\r\n$1\r\nx\r\n", []int{19}},
		{"resp3 null", "_\r\n", []int{3}},
		{"double bool bignum", ",1.5\r\n#t\r\n(123456789012345678901234567890\r\n", []int{6, 4, 33}},
		{"map", "%2\r\n+a\r\n:1\r\n+b\r\n:2\r\n", []int{20}},
		{"set", "~2\r\n+a\r\n+b\r\n", []int{12}},
		{"verbatim", "=15\r\ntxt:Some string\r\n", []int{22}},
		{"blob error", "!21\r\nSYNTAX invalid syntax\r\n", []int{28}},
		{"push", ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n", []int{32}},
		{"attribute then value", "|1\r\n+ttl\r\n:3600\r\n$2\r\nhi\r\n", []int{25}},
		{"attribute inside array", "*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n", []int{24}},
		{"empty map", "%0\r\n", []int{4}},
		{"pipeline", "+OK\r\n:1\r\n$-1\r\n", []int{5, 4, 5}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// whole, then one byte at a time: the same boundaries
			for _, step := range []int{len(tc.in), 1, 3} {
				var f respFramer
				var got []int
				start, pos := 0, 0
				for pos < len(tc.in) {
					end := min(pos+step, len(tc.in))
					chunk := []byte(tc.in[pos:end])
					for len(chunk) > 0 {
						n, done, err := f.feed(chunk)
						if err != nil {
							t.Fatalf("step %d: %v", step, err)
						}
						pos += n
						chunk = chunk[n:]
						if done {
							got = append(got, pos-start)
							start = pos
						}
					}
				}
				if !equalInts(got, tc.sizes) || f.mid() {
					t.Fatalf("step %d: replies %v (mid %v), want %v", step, got, f.mid(), tc.sizes)
				}
			}
		})
	}
	for _, bad := range []string{"x\r\n", "$-2\r\n", "*a\r\n", "$\r\n", "*?\r\n"} {
		var f respFramer
		if _, _, err := f.feed([]byte(bad)); !errors.Is(err, errBadReply) {
			t.Errorf("%q: err = %v, want errBadReply", bad, err)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPubsubFrames(t *testing.T) {
	cases := []struct {
		in   string
		kind pubsubKind
		name string
		cnt  int64
	}{
		{"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n", psMessage, "", 0},
		{">4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nch\r\n$1\r\nx\r\n", psMessage, "", 0},
		{"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n", psSubscribe, "ch", 1},
		{">3\r\n$10\r\npsubscribe\r\n$2\r\nc*\r\n:2\r\n", psPsubscribe, "c*", 2},
		{"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n", psUnsubscribe, "", 0},
		{">3\r\n$12\r\nsunsubscribe\r\n_\r\n:0\r\n", psSunsubscribe, "", 0},
		{"*2\r\n$4\r\npong\r\n$0\r\n\r\n", psNone, "", 0},
		{">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n", psNone, "", 0},
		{"+OK\r\n", psNone, "", 0},
	}
	for _, tc := range cases {
		if k := pubsubFrame([]byte(tc.in)); k != tc.kind {
			t.Errorf("%q: kind %d, want %d", tc.in, k, tc.kind)
		}
		if tc.kind >= psSubscribe {
			name, _, cnt, ok := confirmation([]byte(tc.in))
			if !ok || string(name) != tc.name || cnt != tc.cnt {
				t.Errorf("%q: confirmation %q %d %v", tc.in, name, cnt, ok)
			}
		}
	}
}

func TestCommandTable(t *testing.T) {
	for _, c := range allCommands() {
		if c.name != strings.ToLower(c.name) || (c.class != classShared && c.why == "") {
			t.Errorf("bad row %+v", c)
		}
		if strings.Contains(c.name, "|") {
			continue
		}
		want := c.kind
		if c.class == classRefused || c.deny {
			want = cmdRefused
		}
		for _, variant := range []string{c.name, strings.ToUpper(c.name)} {
			if got := lookupCommand([]byte(variant)); got.kind != want || got.own != (c.class == classOwn && c.kind != cmdHello) {
				t.Errorf("lookup %q = %+v, want kind %v own %v", variant, got, want, c.class == classOwn)
			}
		}
	}
	for _, plain := range []string{"get", "SET", "publish", "x", "", "averyveryverylongcommandname", "client2", strings.Repeat("x", 100)} {
		if got := lookupCommand([]byte(plain)); got.kind != cmdPlain || got.own || got.bySub {
			t.Errorf("%q is special (%+v)", plain, got)
		}
	}
	for _, must := range []string{"shutdown", "replicaof", "slaveof", "debug", "sync", "psync", "failover", "cluster"} {
		if got := lookupCommand([]byte(must)); got.kind != cmdRefused || !strings.Contains(got.refuse, "is not allowed through redhaven") {
			t.Errorf("%s must be refused: %+v", must, got)
		}
	}
	sub := func(args ...string) commandSpec {
		var b [][]byte
		for _, a := range args {
			b = append(b, []byte(a))
		}
		return defaultIndex.resolve(b)
	}
	if got := sub("CLIENT", "Kill", "ID", "1"); !got.own || got.kind != cmdClient {
		t.Errorf("CLIENT KILL = %+v", got)
	}
	if got := sub("client", "list"); got.own || got.kind != cmdClient {
		t.Errorf("CLIENT LIST = %+v", got)
	}
	if got := sub("script", "debug", "sync"); !got.own {
		t.Errorf("SCRIPT DEBUG = %+v", got)
	}
	if got := sub("script", "load", "return 1"); got.own || got.kind != cmdPlain {
		t.Errorf("SCRIPT LOAD = %+v", got)
	}
	if got := sub("CONFIG", "SET", "maxmemory", "1", "MasterAuth", "x"); got.kind != cmdRefused || !strings.Contains(got.refuse, `remove "CONFIG SET masterauth" from proxy.deny_commands`) {
		t.Errorf("CONFIG SET masterauth = %+v", got)
	}
	if got := sub("CONFIG", "SET", "maxmemory", "1"); got.kind != cmdAdmin {
		t.Errorf("CONFIG SET maxmemory = %+v", got)
	}
	if got := sub("cluster", "info"); got.kind != cmdRefused {
		t.Errorf("CLUSTER INFO = %+v", got)
	}
	if n := testing.AllocsPerRun(100, func() { lookupCommand([]byte("SUBSCRIBE")); lookupCommand([]byte("get")) }); n != 0 {
		t.Errorf("lookup allocates %v", n)
	}
	args := [][]byte{[]byte("CLIENT"), []byte("KILL"), []byte("ID"), []byte("3")}
	if n := testing.AllocsPerRun(100, func() { defaultIndex.resolve(args) }); n != 0 {
		t.Errorf("resolve allocates %v", n)
	}
}

func TestRequestReader(t *testing.T) {
	cases := []struct {
		name string
		in   string
		cmds []string // raw commands expected
		err  string
	}{
		{"one", "*1\r\n$4\r\nPING\r\n", []string{"*1\r\n$4\r\nPING\r\n"}, ""},
		{"pipeline", "*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", []string{"*1\r\n$4\r\nPING\r\n", "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"}, ""},
		{"empty multibulk skipped", "*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n", []string{"*1\r\n$4\r\nPING\r\n"}, ""},
		{"inline", "PING\r\nGET k\n", []string{"PING\r\n", "GET k\n"}, ""},
		{"incomplete", "*2\r\n$3\r\nGET\r\n$1\r\n", nil, ""},
		{"bad count", "*x\r\n", nil, "Protocol error: invalid multibulk length"},
		{"not bulk", "*1\r\n+PING\r\n", nil, "Protocol error: expected '$', got '+'"},
		{"bad bulk", "*1\r\n$abc\r\n", nil, "Protocol error: invalid bulk length"},
		{"no crlf after payload", "*1\r\n$1\r\nabc", nil, "Protocol error: invalid bulk length"},
		// a bulk above the maximum gets Redis's text (proto-max-bulk-len), as
		// does a count that cannot fit; a command whose bulks add up to more
		// is "request too large"
		{"too large", "*1\r\n$2000\r\n", nil, "Protocol error: invalid bulk length"},
		{"too many args", "*1000\r\n", nil, "Protocol error: invalid multibulk length"},
		{"too large in all", "*2\r\n$600\r\n" + strings.Repeat("x", 600) + "\r\n$600\r\n", nil, "request too large (max 1024 bytes)"},
		{"huge header", "*1\r\n$11111111111111111111111111111111111111", nil, "Protocol error: invalid bulk length"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, step := range []int{len(tc.in), 1} {
				got, err := readAll(tc.in, step, 1024, false)
				errText := ""
				if err != nil {
					errText = err.Error()
				}
				if errText != tc.err || strings.Join(got, "|") != strings.Join(tc.cmds, "|") {
					t.Fatalf("step %d: got %q, %q; want %q, %q", step, got, errText, tc.cmds, tc.err)
				}
			}
		})
	}
}

// readAll feeds in to a requestReader step bytes at a time.
func readAll(in string, step int, max int64, unauth bool) ([]string, error) {
	out, _, err := readAllNames(in, step, max, unauth)
	return out, err
}

// readAllNames also returns the command name the reader found for each
// multibulk command ("" for inline ones).
func readAllNames(in string, step int, max int64, unauth bool) ([]string, []string, error) {
	var names []string
	r := newRequestReader(max)
	var out []string
	for pos := 0; pos < len(in); {
		sp := r.space()
		n := copy(sp, in[pos:min(pos+step, len(in))])
		r.end += n
		pos += n
		for {
			raw, inline, err := r.peek(unauth)
			if err != nil {
				return out, names, err
			}
			if raw == nil {
				break
			}
			out = append(out, string(raw))
			if inline {
				names = append(names, "")
			} else {
				names = append(names, string(r.name(raw)))
			}
			r.consume(len(raw))
		}
	}
	return out, names, nil
}

// FuzzClientInput feeds arbitrary bytes through the client-side parsing
// path (framing with limits, then redcon.Parse, then the command table),
// whole and in small pieces: it must never panic, both ways must agree,
// and every command must be sane.
func FuzzClientInput(f *testing.F) {
	for _, s := range []string{
		"*1\r\n$4\r\nPING\r\n",
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
		"PING\r\nSET a \"b c\"\r\n",
		"*0\r\n*-1\r\n\r\n",
		"*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n",
		"*1\r\n$-1\r\n",
		"*x\r\n",
		"SET \"a\r\n",
		"*1\r\n$100000\r\n",
	} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		whole, names, errWhole := readAllNames(string(in), len(in)+1, 4096, false)
		pieces, errPieces := readAll(string(in), int(step%16)+1, 4096, false)
		if strings.Join(whole, "\x00") != strings.Join(pieces, "\x00") || (errWhole == nil) != (errPieces == nil) {
			t.Fatalf("whole %q %v != pieces %q %v", whole, errWhole, pieces, errPieces)
		}
		if errWhole != nil {
			var pe *errProtocol
			var tl *errTooLarge
			if !errors.As(errWhole, &pe) && !errors.As(errWhole, &tl) {
				t.Fatalf("unexpected error type %T %v", errWhole, errWhole)
			}
		}
		consumed := 0
		for i, raw := range whole {
			consumed += len(raw)
			if len(raw) > 4096 && raw[0] == '*' {
				t.Fatalf("command above the limit: %d bytes", len(raw))
			}
			cmd, err := redcon.Parse([]byte(raw))
			if err != nil && raw[0] == '*' {
				t.Fatalf("framed %q but redcon rejects it: %v (the session's fast path relies on the framing)", raw, err)
			}
			if err != nil {
				continue // an inline line redcon rejects: the session answers a protocol error
			}
			if len(cmd.Args) == 0 {
				t.Fatalf("command without args from %q", raw)
			}
			lookupCommand(cmd.Args[0])
			if raw[0] == '*' && names[i] != string(cmd.Args[0]) {
				t.Fatalf("name %q, redcon says %q", names[i], cmd.Args[0])
			}
			if raw[0] == '*' && !bytes.Equal(appendCommand(nil, cmd.Args...), []byte(raw)) {
				t.Fatalf("raw %q does not match its args %q", raw, cmd.Args)
			}
		}
		if consumed > len(in) {
			t.Fatalf("consumed %d of %d bytes", consumed, len(in))
		}
	})
}

// simpleReplyLen (the plain-reply fast path) must agree with respFramer
// whenever it claims a reply, and leave to it what it must look at.
func TestSimpleReplyLen(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"+OK\r\n", 5},
		{"+OK\r\n+OK\r\n", 5},
		{"+OK\r", 0},
		{":12\r\n", 5},
		{"$5\r\nhello\r\n", 11},
		{"$5\r\nhello\r\n:1\r\n", 11},
		{"$5\r\nhell", 0},
		{"$0\r\n\r\n", 6},
		{"$-1\r\n", 5},
		{"$-2\r\n", 0},
		{"$\r\n", 0},
		{"$x\r\n", 0},
		{"$12345678901\r\n", 0},
		{"_\r\n", 3},
		{",1.5\r\n", 6},
		{"#t\r\n", 4},
		{"(123\r\n", 6},
		{"-ERR wrong type of value\r\n", 26},
		{"-ERR x\r\n", 0}, // too short to rule out READONLY: general path
		{"-READONLY You can't write\r\n", 0},
		{"-UNBLOCKED force unblock\r\n", 0},
		{"*1\r\n$1\r\na\r\n", 0},
		{">3\r\n", 0},
		{"!3\r\nerr\r\n", 0},
		{"=5\r\ntxt:a\r\n", 0},
		{"%0\r\n", 0},
	}
	for _, tc := range tests {
		t.Run(strings.TrimSpace(tc.in[:min(len(tc.in), 12)]), func(t *testing.T) {
			got := simpleReplyLen([]byte(tc.in))
			if got != tc.want {
				t.Fatalf("simpleReplyLen(%q) = %d, want %d", tc.in, got, tc.want)
			}
			if got > 0 {
				var f respFramer
				k, done, err := f.feed([]byte(tc.in))
				if err != nil || !done || k != got {
					t.Fatalf("framer disagrees on %q: %d %v %v", tc.in, k, done, err)
				}
			}
		})
	}
}
