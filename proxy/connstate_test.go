package proxy

import (
	"strings"
	"testing"
)

// Table tests of the connection state: no socket, no Redis.

var (
	passThrough = cmdEnv{}                                // 1:1, client AUTH goes to Redis
	muxed       = cmdEnv{multiplex: true}                 // shared connections
	withPass    = cmdEnv{password: "pw", multiplex: true} // proxy.password
)

// st runs commands through a state as the session does when each one is
// forwarded (or answered) at once, and Redis accepts the ones it follows.
type st struct {
	t   *testing.T
	c   connState
	env cmdEnv
}

func newSt(t *testing.T, env cmdEnv) *st {
	return &st{t: t, c: newConnState(env.needAuth()), env: env}
}

func (s *st) do(words ...string) verdict {
	s.t.Helper()
	args := make([][]byte, len(words))
	for i, w := range words {
		args[i] = []byte(w)
	}
	raw := appendCommandStrings(nil, words...)
	next, v := s.c.command(defaultIndex.resolve(args), args, len(raw), s.env)
	s.c = next
	if !v.local && v.keepRaw && !v.silent {
		if v.fwd != nil {
			raw = v.fwd
		}
		s.c.accepted(v.kind, raw, s.env.needAuth())
	}
	return v
}

// move is what a new dedicated backend connection does to the state.
func (s *st) move() string {
	log, rp := s.c.replay(nil, s.c.clientAuth())
	for _, r := range rp {
		if r.n <= 0 {
			s.t.Fatalf("replay entry without replies: %+v", r)
		}
	}
	return string(log)
}

func flagsOf(v verdict) string {
	var out []string
	for _, f := range []struct {
		f    uint8
		name string
	}{{fInMulti, "multi"}, {fExecNull, "null"}, {fExecMoved, "moved"}, {fExecDirty, "dirty"}, {fHidden, "hidden"}} {
		if v.flags&f.f != 0 {
			out = append(out, f.name)
		}
	}
	return strings.Join(out, ",")
}

func TestConnStateTransactions(t *testing.T) {
	discard := string(cmdDiscardRaw)
	for _, tc := range []struct {
		name     string
		cmds     [][]string // "move" is a new backend connection
		flags    string     // of the last verdict
		fwd      string     // what is sent instead of the last command ("" as it came)
		local    string     // the proxy's answer to the last command
		inMulti  bool       // after
		watching bool
	}{
		{name: "exec", cmds: [][]string{{"MULTI"}, {"SET", "k", "v"}, {"EXEC"}}, flags: "multi"},
		{name: "set in multi", cmds: [][]string{{"MULTI"}, {"SET", "k", "v"}}, flags: "multi", inMulti: true},
		{name: "discard", cmds: [][]string{{"MULTI"}, {"SET", "k", "v"}, {"DISCARD"}}, flags: "multi"},
		{name: "refused in multi makes exec fail", cmds: [][]string{{"MULTI"}, {"DEBUG", "SLEEP", "0"}, {"EXEC"}}, flags: "multi,dirty", fwd: discard},
		{name: "shutdown in multi goes to redis, which refuses it", cmds: [][]string{{"MULTI"}, {"SHUTDOWN"}}, flags: "multi", inMulti: true},
		{name: "subscribe in multi refused", cmds: [][]string{{"MULTI"}, {"SUBSCRIBE", "c"}}, local: ReplySubscribeInMulti, inMulti: true},
		{name: "subscribe in multi makes exec fail", cmds: [][]string{{"MULTI"}, {"SUBSCRIBE", "c"}, {"EXEC"}}, flags: "multi,dirty", fwd: discard},
		{name: "exec after a move fails", cmds: [][]string{{"MULTI"}, {"SET", "k", "v"}, {"move"}, {"EXEC"}}, flags: "multi,moved", fwd: discard},
		{name: "discard after a move", cmds: [][]string{{"MULTI"}, {"move"}, {"DISCARD"}}, flags: "multi"},
		{name: "moved wins over dirty", cmds: [][]string{{"MULTI"}, {"SHUTDOWN"}, {"move"}, {"EXEC"}}, flags: "multi,moved", fwd: discard},
		{name: "watch", cmds: [][]string{{"WATCH", "k"}}, watching: true},
		{name: "watch lost on a move: exec null", cmds: [][]string{{"WATCH", "k"}, {"move"}, {"MULTI"}, {"EXEC"}}, flags: "multi,null", fwd: discard},
		{name: "watch moved before watch: kept", cmds: [][]string{{"move"}, {"WATCH", "k"}, {"MULTI"}, {"EXEC"}}, flags: "multi"},
		{name: "unwatch before the move", cmds: [][]string{{"WATCH", "k"}, {"UNWATCH"}, {"move"}, {"MULTI"}, {"EXEC"}}, flags: "multi"},
		{name: "unwatch after the loss", cmds: [][]string{{"WATCH", "k"}, {"move"}, {"UNWATCH"}, {"MULTI"}, {"EXEC"}}, flags: "multi"},
		{name: "watch inside multi ignored", cmds: [][]string{{"MULTI"}, {"WATCH", "k"}}, flags: "multi", inMulti: true},
		{name: "exec ends watch", cmds: [][]string{{"WATCH", "k"}, {"MULTI"}, {"EXEC"}, {"move"}, {"MULTI"}, {"EXEC"}}, flags: "multi"},
		{name: "exec without multi", cmds: [][]string{{"EXEC"}}},
		// Redis answers EXEC and DISCARD without MULTI with an error and
		// keeps the WATCH: a lost one must still fail the next EXEC
		{name: "exec without multi keeps a lost watch", cmds: [][]string{{"WATCH", "k"}, {"move"}, {"EXEC"}, {"MULTI"}, {"EXEC"}}, flags: "multi,null", fwd: discard},
		{name: "discard without multi keeps a lost watch", cmds: [][]string{{"WATCH", "k"}, {"move"}, {"DISCARD"}, {"MULTI"}, {"EXEC"}}, flags: "multi,null", fwd: discard},
		{name: "discard without multi keeps watch", cmds: [][]string{{"WATCH", "k"}, {"DISCARD"}}, watching: true},
		{name: "reset ends multi", cmds: [][]string{{"MULTI"}, {"RESET"}}, flags: "multi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSt(t, passThrough)
			var v verdict
			for _, c := range tc.cmds {
				if c[0] == "move" {
					s.move()
					continue
				}
				v = s.do(c...)
			}
			if got := flagsOf(v); !v.local && got != tc.flags {
				t.Errorf("flags = %q, want %q", got, tc.flags)
			}
			if string(v.fwd) != tc.fwd {
				t.Errorf("sent %q instead, want %q", v.fwd, tc.fwd)
			}
			if v.local != (tc.local != "") || v.reply != tc.local {
				t.Errorf("local = %v %q, want %q", v.local, v.reply, tc.local)
			}
			if s.c.inMulti != tc.inMulti || s.c.watching != tc.watching {
				t.Errorf("after: inMulti %v watching %v, want %v %v", s.c.inMulti, s.c.watching, tc.inMulti, tc.watching)
			}
		})
	}
}

func TestConnStateMoveReplaysMulti(t *testing.T) {
	s := newSt(t, passThrough)
	s.do("MULTI")
	if got := s.move(); got != string(cmdMultiRaw) {
		t.Fatalf("replay inside MULTI = %q, want MULTI", got)
	}
	if !s.c.multiMoved {
		t.Fatal("multiMoved not set by the move")
	}
}

func TestConnStateClientReply(t *testing.T) {
	s := newSt(t, passThrough)
	type step struct {
		cmd    []string
		silent bool
	}
	for i, x := range []step{
		{[]string{"GET", "k"}, false},
		{[]string{"CLIENT", "REPLY", "SKIP"}, true},
		{[]string{"GET", "k"}, true}, // the one skipped
		{[]string{"GET", "k"}, false},
		{[]string{"CLIENT", "REPLY", "OFF"}, true},
		{[]string{"GET", "k"}, true},
		{[]string{"CLIENT", "REPLY", "SKIP"}, true}, // SKIP under OFF: still off, no skip pending
		{[]string{"GET", "k"}, true},
		{[]string{"CLIENT", "REPLY", "ON"}, false}, // ON is answered
		{[]string{"GET", "k"}, false},
		{[]string{"CLIENT", "REPLY", "SKIP"}, true},
		{[]string{"SHUTDOWN"}, true}, // a local answer is skipped too
		{[]string{"GET", "k"}, false},
		{[]string{"CLIENT", "REPLY", "OFF"}, true},
		{[]string{"RESET"}, false}, // RESET turns replies on and is answered
		{[]string{"GET", "k"}, false},
	} {
		v := s.do(x.cmd...)
		if v.silent != x.silent {
			t.Fatalf("step %d %v: silent = %v, want %v", i, x.cmd, v.silent, x.silent)
		}
	}
	s.do("CLIENT", "REPLY", "OFF")
	if got := string(s.c.replayTail()); got != string(cmdReplyOffRaw) {
		t.Fatalf("replay tail under REPLY OFF = %q", got)
	}
	s.do("CLIENT", "REPLY", "SKIP")
	v := s.do("QUIT")
	if !v.local || !v.closeAfter || !v.silent {
		t.Fatalf("QUIT under REPLY OFF: %+v, want a silent local answer that closes", v)
	}
}

func TestConnStateHelloAuthSetname(t *testing.T) {
	t.Run("pass through", func(t *testing.T) {
		s := newSt(t, muxed)
		v := s.do("HELLO", "3", "AUTH", "alice", "secret", "SETNAME", "app")
		if v.local || !v.own || !v.keepRaw || v.fwd != nil {
			t.Fatalf("HELLO 3 AUTH SETNAME: %+v, want forwarded as is on an own connection", v)
		}
		if s.c.proto != 3 {
			t.Fatalf("proto = %d after HELLO 3 accepted", s.c.proto)
		}
		want := string(appendCommandStrings(nil, "AUTH", "alice", "secret")) +
			string(cmdHello3) +
			string(appendCommandStrings(nil, "CLIENT", "SETNAME", "app"))
		if got := s.move(); got != want {
			t.Fatalf("replay = %q, want %q (AUTH before HELLO)", got, want)
		}
		s.do("HELLO", "2", "SETNAME", "")
		want = string(appendCommandStrings(nil, "AUTH", "alice", "secret"))
		if got := s.move(); got != want {
			t.Fatalf("replay after HELLO 2 SETNAME '' = %q, want %q", got, want)
		}
	})
	t.Run("proxy password", func(t *testing.T) {
		s := newSt(t, withPass)
		for _, x := range []struct {
			cmd   []string
			local string
		}{
			{[]string{"GET", "k"}, ReplyNoAuth},
			{[]string{"HELLO", "3"}, ReplyNoAuth},
			{[]string{"HELLO", "3", "AUTH", "default", "nope"}, ReplyWrongPass},
			{[]string{"HELLO", "3", "AUTH", "default"}, "-ERR Syntax error in HELLO option 'auth'\r\n"},
			{[]string{"AUTH", "bob", "pw"}, ReplyWrongPass},
			{[]string{"AUTH", "a", "b", "c"}, "-ERR wrong number of arguments for 'auth' command\r\n"},
		} {
			if v := s.do(x.cmd...); !v.local || v.reply != x.local {
				t.Fatalf("%v: %+v, want local %q", x.cmd, v, x.local)
			}
		}
		v := s.do("HELLO", "3", "AUTH", "default", "pw", "SETNAME", "app")
		if v.local || string(v.fwd) != string(appendCommandStrings(nil, "HELLO", "3", "SETNAME", "app")) {
			t.Fatalf("HELLO with the proxy password: %+v (fwd %q), want forwarded without AUTH", v, v.fwd)
		}
		if !s.c.authed || s.c.clientAuth() != nil {
			t.Fatalf("after HELLO AUTH: authed %v, client auth %q (the proxy's own is replayed)", s.c.authed, s.c.clientAuth())
		}
		s.c.authed = false
		if v := s.do("AUTH", "pw"); !v.local || v.reply != "+OK\r\n" || !s.c.authed {
			t.Fatalf("AUTH pw: %+v", v)
		}
		if v := s.do("RESET"); v.local || !v.fresh || s.c.authed {
			t.Fatalf("RESET: %+v authed %v: want forwarded, a fresh connection, authentication again", v, s.c.authed)
		}
	})
}

func TestConnStateResetSelect(t *testing.T) {
	s := newSt(t, passThrough)
	s.do("SELECT", "2")
	s.do("CLIENT", "SETNAME", "n")
	s.do("CLIENT", "TRACKING", "on")
	s.do("READONLY")
	want := string(appendCommandStrings(nil, "SELECT", "2")) + string(appendCommandStrings(nil, "CLIENT", "SETNAME", "n")) +
		string(appendCommandStrings(nil, "READONLY")) + string(appendCommandStrings(nil, "CLIENT", "TRACKING", "on"))
	if got := s.move(); got != want {
		t.Fatalf("replay = %q, want %q", got, want)
	}
	s.do("SELECT", "0")
	s.do("READWRITE")
	s.do("CLIENT", "TRACKING", "off")
	want = string(appendCommandStrings(nil, "CLIENT", "SETNAME", "n")) + string(appendCommandStrings(nil, "CLIENT", "TRACKING", "off"))
	if got := s.move(); got != want {
		t.Fatalf("replay after SELECT 0 = %q, want %q", got, want)
	}
	s.do("HELLO", "3")
	s.do("SUBSCRIBE", "c")
	s.c.confirmed([]byte(">3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n"))
	if v := s.do("RESET"); !v.fresh || !v.keepRaw {
		t.Fatalf("RESET verdict %+v", v)
	}
	if s.c.proto != 2 || s.c.subscribed() {
		t.Fatalf("after RESET: proto %d subscribed %v", s.c.proto, s.c.subscribed())
	}
	if got := s.move(); got != "" {
		t.Fatalf("replay after RESET = %q, want nothing", got)
	}
}

func TestConnStatePubsub(t *testing.T) {
	for _, proto := range []int{2, 3} {
		conf := func(kind, name string, n int) []byte {
			head := "*3\r\n"
			if proto == 3 {
				head = ">3\r\n"
			}
			nm := bulk(name)
			if name == "" {
				nm = "$-1\r\n"
				if proto == 3 {
					nm = "_\r\n"
				}
			}
			return []byte(head + bulk(kind) + nm + ":" + string(rune('0'+n)) + "\r\n")
		}
		s := newSt(t, passThrough)
		for _, x := range []struct {
			cmd []string
			n   int32
		}{
			{[]string{"SUBSCRIBE", "a", "b"}, 2},
			{[]string{"SUBSCRIBE"}, 1}, // Redis's error
			{[]string{"PSUBSCRIBE", "p*"}, 1},
			{[]string{"SSUBSCRIBE", "s1", "s2", "s3"}, 3},
			{[]string{"UNSUBSCRIBE", "a"}, 1},
			{[]string{"UNSUBSCRIBE"}, -1},
			{[]string{"PUNSUBSCRIBE"}, -1},
		} {
			if v := s.do(x.cmd...); v.n != x.n {
				t.Fatalf("RESP%d %v: n = %d, want %d", proto, x.cmd, v.n, x.n)
			}
		}
		if got := s.c.unsubscribeAll(cmdUnsubscribe); got != 1 {
			t.Fatalf("UNSUBSCRIBE of nothing expects %d replies, want 1", got)
		}
		for _, f := range [][]byte{conf("subscribe", "a", 1), conf("subscribe", "b", 2), conf("psubscribe", "p*", 3),
			conf("ssubscribe", "s1", 1), []byte("*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n")} {
			s.c.confirmed(f)
		}
		if got := s.c.unsubscribeAll(cmdUnsubscribe); got != 2 {
			t.Fatalf("RESP%d: UNSUBSCRIBE expects %d replies, want 2", proto, got)
		}
		if got := s.c.unsubscribeAll(cmdSunsubscribe); got != 1 {
			t.Fatalf("RESP%d: SUNSUBSCRIBE expects %d replies, want 1", proto, got)
		}
		log, rp := s.c.replay(nil, nil)
		want := map[cmdKind]int32{cmdSubscribe: 2, cmdPsubscribe: 1, cmdSsubscribe: 1}
		if len(rp) != 3 {
			t.Fatalf("RESP%d replay %q: %+v", proto, log, rp)
		}
		for _, r := range rp {
			if want[r.kind] != r.n {
				t.Fatalf("RESP%d replay %+v, want %v", proto, rp, want)
			}
		}
		s.c.confirmed(conf("unsubscribe", "a", 1))
		s.c.confirmed(conf("unsubscribe", "", 0)) // nothing left: no name
		s.c.confirmed(conf("punsubscribe", "p*", 0))
		if got := s.c.unsubscribeAll(cmdUnsubscribe); got != 1 || len(s.c.subs[famChannels]) != 1 || len(s.c.subs[famPatterns]) != 0 {
			t.Fatalf("RESP%d after unsubscribes: %v", proto, s.c.subs)
		}
	}
}

func TestConnStateOwnConnection(t *testing.T) {
	for _, tc := range []struct {
		cmd   []string
		own   bool
		proto int
	}{
		{[]string{"GET", "k"}, false, 0},
		{[]string{"PING"}, false, 0},
		{[]string{"BLPOP", "k", "0"}, true, 0},
		{[]string{"XREAD", "STREAMS", "s", "0"}, true, 0},
		{[]string{"WAIT", "1", "0"}, true, 0},
		{[]string{"AUTH", "pw"}, true, 0},
		{[]string{"HELLO"}, false, 0},
		{[]string{"HELLO", "3"}, false, 3},
		{[]string{"HELLO", "2"}, false, 2},
		{[]string{"HELLO", "3", "SETNAME", "x"}, true, 0},
		{[]string{"SELECT", "1"}, true, 0},
		{[]string{"CLIENT", "SETINFO", "LIB-NAME", "x"}, false, 0},
		{[]string{"CLIENT", "SETNAME", "x"}, true, 0},
		{[]string{"CLIENT", "ID"}, true, 0},
		{[]string{"MULTI"}, true, 0},
		{[]string{"WATCH", "k"}, true, 0},
		{[]string{"SUBSCRIBE", "c"}, true, 0},
		{[]string{"READONLY"}, true, 0},
		{[]string{"RESET"}, true, 0},
		{[]string{"CONFIG", "GET", "maxmemory"}, false, 0},
		{[]string{"CONFIG", "SET", "maxmemory", "1gb"}, false, 0},
		{[]string{"CONFIG", "SET", "maxmemory", "1gb", "requirepass", "x"}, true, 0},
		{[]string{"ACL", "WHOAMI"}, false, 0},
		{[]string{"ACL", "SETUSER", "bob", "on"}, true, 0},
		{[]string{"ACL", "DELUSER", "bob"}, true, 0},
		{[]string{"ACL", "LOAD"}, true, 0},
	} {
		s := newSt(t, muxed)
		v := s.do(tc.cmd...)
		if v.local || v.own != tc.own || v.muxProto != tc.proto {
			t.Errorf("%v: own %v proto %d (local %v), want own %v proto %d", tc.cmd, v.own, v.muxProto, v.local, tc.own, tc.proto)
		}
		s = newSt(t, passThrough)
		if v := s.do(tc.cmd...); v.own {
			t.Errorf("%v without multiplexing: own", tc.cmd)
		}
	}
	big := make([]byte, bigCommand+1)
	c := newConnState(false)
	if _, v := c.command(plainSpec, [][]byte{[]byte("SET"), []byte("k"), big}, len(big)+30, muxed); !v.own {
		t.Error("a command above 1 MiB stays on a shared connection")
	}
	c.ownConn = true
	if _, v := c.command(plainSpec, [][]byte{[]byte("BLPOP"), []byte("k")}, 30, muxed); v.own {
		t.Error("a session with its own connection asked for it again")
	}
}

func TestConnStateHelloAfterAuth(t *testing.T) {
	s := newSt(t, muxed)
	s.do("HELLO", "3")
	if s.c.proto != 3 {
		t.Fatal("HELLO 3 not followed")
	}
	// a new dedicated connection, no AUTH known: HELLO 3 is replayed, and
	// again after the next AUTH until Redis accepts it
	if got := s.move(); got != string(cmdHello3) || !s.c.helloAfterAuth {
		t.Fatalf("replay %q, helloAfterAuth %v", got, s.c.helloAfterAuth)
	}
	if !s.c.replayAnswered(cmdHello, []byte("-NOAUTH HELLO must be called with the client already authenticated\r\n")) {
		t.Fatal("a replayed HELLO 3 refused with NOAUTH closes the session")
	}
	if s.c.replayAnswered(cmdSelect, []byte("-NOAUTH Authentication required.\r\n")) {
		t.Fatal("another replayed command refused: the session goes on")
	}
	if v := s.do("GET", "k"); v.hello {
		t.Fatal("HELLO after a command that is not AUTH")
	}
	v := s.do("AUTH", "pw")
	if !v.hello || s.c.helloAfterAuth {
		t.Fatalf("AUTH: hello %v, helloAfterAuth %v: want HELLO 3 after it, once", v.hello, s.c.helloAfterAuth)
	}
	if v := s.do("AUTH", "pw"); v.hello {
		t.Fatal("HELLO 3 after a second AUTH")
	}
	// with the AUTH known, the replay authenticates first
	want := string(appendCommandStrings(nil, "AUTH", "pw")) + string(cmdHello3)
	if got := s.move(); got != want || s.c.helloAfterAuth {
		t.Fatalf("replay %q (helloAfterAuth %v), want %q", got, s.c.helloAfterAuth, want)
	}
	// the client choosing its protocol cancels it
	s.c.helloAfterAuth = true
	s.do("HELLO", "3", "AUTH", "default", "pw")
	if s.c.helloAfterAuth {
		t.Fatal("HELLO with AUTH leaves a HELLO 3 pending")
	}
	// no HELLO 3 after an AUTH whose reply is off or inside MULTI
	s.c.helloAfterAuth = true
	s.do("CLIENT", "REPLY", "SKIP")
	if v := s.do("AUTH", "pw"); v.hello {
		t.Fatal("HELLO after a skipped AUTH")
	}
}
