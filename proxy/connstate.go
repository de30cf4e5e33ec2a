package proxy

import (
	"bytes"
	"crypto/subtle"

	"github.com/tidwall/redcon"
)

// connState is the state of a client connection as the proxy follows it:
// what Redis would hold for a direct connection (authentication,
// transaction, CLIENT REPLY mode, protocol, the state replayed on a new
// backend connection) and which kind of backend connection it needs. It
// knows no socket, lock or FIFO: command says what to do with a command
// (a pure function of the state and the command), accepted and
// subscribed follow what Redis confirmed, replay says what a new backend
// connection must be given. The session holds one under its mu.
type connState struct {
	authed         bool // proxy.password mode: the client authenticated to the proxy
	inMulti        bool // client side: between MULTI and EXEC/DISCARD
	multiDirty     bool // a command inside MULTI was refused here
	multiMoved     bool // MULTI was replayed on a new master: EXEC must fail
	watching       bool
	watchLost      bool // WATCH was active when the connection changed: EXEC returns null
	replyOff       bool // CLIENT REPLY OFF
	skipNext       bool // CLIENT REPLY SKIP
	helloAfterAuth bool // HELLO 3 goes again after the next AUTH (see replay)
	monitoring     bool // MONITOR accepted: the server's commands stream in as status lines
	// ownConn: the session has used something a shared connection cannot
	// carry (mux.go, commands.go); it keeps a dedicated connection.
	ownConn bool
	// muxProto is the protocol of the shared connection the session
	// wants (HELLO 2 or 3 moves it between shared connections).
	muxProto int
	// proto is the protocol Redis confirmed.
	proto int
	// *replayState is nil until a command sets some (most sessions never
	// do; memory per idle client): written after ensureState only.
	*replayState
}

type replayState struct {
	authRaw     []byte
	selectRaw   []byte
	nameRaw     []byte
	readonlyRaw []byte
	replays     []keyedRaw
	subs        [numFams]map[string]struct{} // by pubsubFam
}

type keyedRaw struct {
	key string
	raw []byte
}

// noReplayState stands for a connection without state (read only).
var noReplayState replayState

func newConnState(needAuth bool) connState {
	return connState{authed: !needAuth, proto: 2, muxProto: 2}
}

func (c *connState) ensureState() {
	if c.replayState == nil {
		c.replayState = &replayState{}
	}
}

// subscribed says whether the connection has any subscription.
func (c *connState) subscribed() bool {
	return c.replayState != nil && len(c.subs[famChannels])+len(c.subs[famPatterns])+len(c.subs[famShards]) > 0
}

// silent says whether the next command's reply is not sent (CLIENT REPLY).
func (c *connState) silent() bool { return c.replyOff || c.skipNext }

// cmdEnv is what command needs to know of the proxy's configuration.
type cmdEnv struct {
	password  string // proxy.password; "" passes AUTH through to Redis
	multiplex bool
}

func (env cmdEnv) needAuth() bool { return env.password != "" }

// checkPassword checks AUTH arguments ([pass] or [user pass]) against
// proxy.password; the user must be "default".
func (env cmdEnv) checkPassword(args [][]byte) bool {
	pass := args[len(args)-1]
	if len(args) == 2 && !equalFold(args[0], "default") {
		return false
	}
	return subtle.ConstantTimeCompare(pass, []byte(env.password)) == 1
}

// verdict is what to do with one command.
type verdict struct {
	// local: the proxy answers it with reply (nothing forwarded); "" with
	// silent and without closeAfter is no answer at all
	local      bool
	reply      string
	closeAfter bool // close the client once the answer is out (QUIT)
	silent     bool // no reply goes to the client (CLIENT REPLY OFF/SKIP)

	// forwarded:
	own      bool    // needs a backend connection of its own (multiplexed)
	muxProto int     // the protocol of shared connection it wants; 0: unchanged
	fwd      []byte  // send these bytes instead of the command (nil: as it came)
	n        int32   // replies expected; -1: one per subscription, counted on the first
	flags    uint8   // FIFO entry flags (fInMulti, fExec*)
	keepRaw  bool    // keep a copy: accepted follows it from the reply
	fresh    bool    // RESET: a fresh backend connection after it
	hello    bool    // send a hidden HELLO 3 right after it (helloAfterAuth)
	kind     cmdKind //
	holdFail connState
	label    string // a refused command as counted (commandSpec.label)
}

// command decides what to do with a command (args parsed, size its raw
// length) and returns the state once it is done. When the command must
// wait for a backend connection, the caller keeps c and runs command
// again later; if that wait fails, v.holdFail is the state after the
// proxy's MASTERDOWN answer.
func (c connState) command(spec commandSpec, args [][]byte, size int, env cmdEnv) (connState, verdict) {
	kind := spec.kind
	if kind == cmdAdmin && !authChange(args) {
		kind = cmdPlain
		spec.kind = cmdPlain
	}
	if kind == cmdRefused && spec.noMulti && c.inMulti {
		// Redis refuses it inside MULTI itself ("Command not allowed
		// inside a transaction"): the client gets Redis's own answer, and
		// Redis's EXECABORT after it
		kind, spec.kind = cmdPlain, cmdPlain
	}
	if spec.configGet && env.needAuth() && c.authed && c.inMulti {
		// its reply would come inside EXEC's, where the passwords are not
		// hidden (secrets.go); refused as a queueing error
		silent := c.silent()
		c.skipNext, c.multiDirty = false, true
		return c, verdict{kind: kind, local: true, reply: replyConfigGetInMulti, silent: silent}
	}
	next, v, helloFwd, done := c.answerHere(kind, spec.refuse, args, env)
	if done {
		if v.kind == cmdRefused {
			v.label = spec.label
		}
		return next, v
	}
	silent := c.silent()
	needAuth := env.needAuth()
	v = verdict{kind: kind, n: 1}

	// forwarded
	if !c.ownConn && env.multiplex {
		shared, proto := sharedOK(spec, args, helloFwd, size)
		v.own = !shared
		v.muxProto = proto
	}
	v.holdFail = c
	v.holdFail.skipNext = false
	if helloFwd != nil {
		c.authed = true
		v.fwd = helloFwd
	}
	c.skipNext = false
	if c.inMulti {
		v.flags |= fInMulti
	}
	switch kind {
	case cmdMulti:
		if !c.inMulti {
			c.inMulti, c.multiDirty, c.multiMoved = true, false, false
		}
	case cmdExec:
		if c.inMulti {
			switch {
			case c.multiMoved:
				v.flags |= fExecMoved
			case c.multiDirty:
				v.flags |= fExecDirty
			case c.watchLost:
				v.flags |= fExecNull
			}
			if v.flags&(fExecMoved|fExecDirty|fExecNull) != 0 {
				v.fwd = cmdDiscardRaw
			}
			c.endMulti()
		}
		// without MULTI Redis answers an error and keeps WATCH
	case cmdDiscard:
		if c.inMulti {
			c.endMulti()
		}
	case cmdWatch:
		if !c.inMulti {
			c.watching = true
		}
	case cmdUnwatch:
		if !c.inMulti {
			c.watching, c.watchLost = false, false
		}
	case cmdMonitor:
		v.keepRaw = true // monitoring starts with Redis's +OK
	case cmdSubscribe, cmdPsubscribe, cmdSsubscribe:
		v.n = int32(len(args) - 1)
		if v.n == 0 {
			v.n = 1 // the error
		}
	case cmdUnsubscribe, cmdPunsubscribe, cmdSunsubscribe:
		v.n = int32(len(args) - 1)
		if v.n == 0 {
			v.n = -1 // one per subscription, counted when the first arrives
		}
	case cmdReset:
		v.keepRaw, v.fresh = true, true
		c.endMulti()
		c.replyOff, silent = false, false
		c.monitoring = false
		c.authed = !needAuth
		c.helloAfterAuth = false
	case cmdClient:
		switch lookupClientSub(args) {
		case clientReply:
			if len(args) == 3 {
				switch {
				case equalFold(args[2], "on"):
					c.replyOff, c.skipNext, silent = false, false, false
				case equalFold(args[2], "off"):
					c.replyOff, c.skipNext, silent = true, false, true
				case equalFold(args[2], "skip"):
					silent = true
					c.skipNext = !c.replyOff
				}
			}
		case clientSetname, clientReplay:
			v.keepRaw = true
		}
	case cmdHello:
		v.keepRaw = true
		c.helloAfterAuth = false // the client chose its protocol
	case cmdAuth, cmdSelect, cmdReadonly, cmdReadwrite:
		v.keepRaw = true
	}
	if v.flags&fInMulti != 0 {
		v.keepRaw = false // state changes inside MULTI are not followed
	}
	if isPubsubKind(kind) {
		// Redis sends (un)subscribe confirmations whatever CLIENT REPLY
		// says (the skipped reply is used up all the same)
		silent = false
	}
	if spec.configGet && needAuth {
		v.flags |= fHideSecrets // Redis's password stays with the proxy
	}
	if kind == cmdAuth && c.helloAfterAuth && !silent && !c.inMulti {
		c.helloAfterAuth = false
		v.hello = true
	}
	v.silent = silent
	return c, v
}

func (c *connState) endMulti() {
	c.inMulti, c.multiDirty, c.multiMoved, c.watching, c.watchLost = false, false, false, false, false
}

// sharedOK says whether a forwarded command may go over a shared
// connection (see ownConnTable), and which protocol's: HELLO 2|3 without
// options chooses the shared connection of that protocol (0: no change);
// CLIENT SETINFO only labels the connection, and is replayed if the
// session later takes its own.
func sharedOK(spec commandSpec, args [][]byte, helloFwd []byte, size int) (ok bool, proto int) {
	if spec.own || size > bigCommand {
		return false, 0
	}
	switch spec.kind {
	case cmdPlain, cmdClient:
		return true, 0 // the table says (own)
	case cmdHello:
		if helloFwd != nil {
			if cmd, err := redcon.Parse(helloFwd); err == nil {
				args = cmd.Args
			}
		}
		switch {
		case len(args) == 1:
			return true, 0
		case len(args) != 2:
			return false, 0
		case string(args[1]) == "2":
			return true, 2
		case string(args[1]) == "3":
			return true, 3
		}
	}
	return false, 0
}

// accepted records the state a command changed, now that Redis accepted
// it (raw is the copy kept for it, verdict.keepRaw).
func (c *connState) accepted(kind cmdKind, raw []byte, needAuth bool) {
	cmd, err := redcon.Parse(raw)
	if err != nil || len(cmd.Args) == 0 {
		return
	}
	args := cmd.Args
	c.ensureState()
	switch kind {
	case cmdAuth:
		c.authRaw = raw
	case cmdHello:
		if len(args) >= 2 {
			if v, ok := parseLen(args[1]); ok && (v == 2 || v == 3) {
				c.proto = v
			}
		}
		for i := 2; i < len(args); {
			switch {
			case equalFold(args[i], "auth") && i+2 < len(args):
				if !needAuth {
					c.authRaw = appendCommand(nil, []byte("AUTH"), args[i+1], args[i+2])
				}
				i += 3
			case equalFold(args[i], "setname") && i+1 < len(args):
				c.setName(args[i+1])
				i += 2
			default:
				i = len(args)
			}
		}
	case cmdSelect:
		if len(args) == 2 {
			if string(args[1]) == "0" {
				c.selectRaw = nil
			} else {
				c.selectRaw = raw
			}
		}
	case cmdClient:
		switch lookupClientSub(args) {
		case clientSetname:
			if len(args) == 3 {
				c.setName(args[2])
			}
		case clientReplay:
			key := string(bytes.ToLower(args[1]))
			if equalFold(args[1], "setinfo") && len(args) > 2 {
				key += " " + string(bytes.ToLower(args[2]))
			}
			for i := range c.replays {
				if c.replays[i].key == key {
					c.replays[i].raw = raw
					return
				}
			}
			c.replays = append(c.replays, keyedRaw{key, raw})
		}
	case cmdReadonly:
		c.readonlyRaw = raw
	case cmdMonitor:
		c.monitoring = true
	case cmdReadwrite:
		c.readonlyRaw = nil
	case cmdReset:
		c.proto = 2
		c.authRaw, c.selectRaw, c.nameRaw, c.readonlyRaw, c.replays = nil, nil, nil, nil, nil
		c.subs = [numFams]map[string]struct{}{}
	}
}

func (c *connState) setName(name []byte) {
	if len(name) == 0 {
		c.nameRaw = nil
		return
	}
	c.nameRaw = appendCommand(nil, []byte("CLIENT"), []byte("SETNAME"), name)
}

// confirmed follows subscriptions from one of Redis's (un)subscribe
// confirmations (RESP2 array or RESP3 push); other frames change nothing.
func (c *connState) confirmed(frame []byte) {
	fam, subscribe, ok := pubsubConfirms(pubsubFrame(frame))
	if !ok {
		return
	}
	name, null, _, ok := confirmation(frame)
	if !ok {
		return
	}
	c.ensureState()
	switch {
	case subscribe:
		if c.subs[fam] == nil {
			c.subs[fam] = map[string]struct{}{}
		}
		c.subs[fam][string(name)] = struct{}{}
	default:
		if !null {
			delete(c.subs[fam], string(name))
		}
	}
}

// unsubscribeAll is how many replies an UNSUBSCRIBE (of kind k) without
// arguments gets: one per subscription of its family, at least one.
func (c *connState) unsubscribeAll(k cmdKind) int32 {
	if c.replayState == nil {
		return 1
	}
	fam, _, _ := pubsubCmd(k)
	return int32(max(1, len(c.subs[fam])))
}

// replay appends to log what a new dedicated backend connection must be
// sent before the client's commands (auth: the AUTH to send, nil none),
// and returns the replies it gets, in order. The connection changed, so
// a transaction in progress is replayed and its EXEC will fail
// (multiMoved), and WATCH is lost (the next EXEC returns null).
func (c *connState) replay(log []byte, auth []byte) ([]byte, []replayEntry) {
	var rp []replayEntry
	add := func(kind cmdKind, n int, cmd []byte) {
		if cmd == nil {
			return
		}
		log = append(log, cmd...)
		rp = append(rp, replayEntry{n: int32(n), kind: kind})
	}
	st := c.replayState
	if st == nil {
		st = &noReplayState
	}
	add(cmdAuth, 1, auth)
	if c.proto == 3 {
		add(cmdHello, 1, cmdHello3)
		// Without AUTH before it, Redis refuses HELLO 3 when it wants a
		// password (one set at runtime): until the replay's answer says
		// otherwise, HELLO 3 goes again after the client's next AUTH.
		c.helloAfterAuth = auth == nil
	}
	add(cmdSelect, 1, st.selectRaw)
	add(cmdClient, 1, st.nameRaw)
	add(cmdReadonly, 1, st.readonlyRaw)
	for _, r := range st.replays {
		add(cmdClient, 1, r.raw)
	}
	for fam, set := range st.subs {
		if len(set) == 0 {
			continue
		}
		args := [][]byte{[]byte(pubsubFams[fam].replay)}
		for name := range set {
			args = append(args, []byte(name))
		}
		add(pubsubFams[fam].sub, len(set), appendCommand(nil, args...))
	}
	if c.monitoring {
		add(cmdMonitor, 1, cmdMonitorRaw) // the stream goes on from the new server
	}
	if c.inMulti {
		add(cmdMulti, 1, cmdMultiRaw)
		c.multiMoved = true
	}
	if c.watching {
		c.watching, c.watchLost = false, true
	}
	return log, rp
}

// replayTail is what goes after the commands resent on a new dedicated
// connection (no reply expected).
func (c *connState) replayTail() []byte {
	if c.replyOff {
		return cmdReplyOffRaw
	}
	return nil
}

// replayAnswered follows the reply to one replayed command; false: the
// state could not be restored.
func (c *connState) replayAnswered(kind cmdKind, frame []byte) bool {
	isErr := frame[0] == '-' || frame[0] == '!'
	if isErr && kind == cmdHello && bytes.HasPrefix(frame, []byte("-NOAUTH")) {
		// Redis wants AUTH first (a password set after the session's
		// HELLO 3): before authenticating, every command gets NOAUTH in
		// either protocol; HELLO 3 follows the client's AUTH.
		c.helloAfterAuth = true
		return true
	}
	if isErr {
		return false
	}
	if isPubsubKind(kind) {
		c.confirmed(frame)
	}
	if kind == cmdHello {
		c.helloAfterAuth = false // accepted
	}
	return true
}

// clientAuth is the client's own AUTH Redis accepted (nil: none).
func (c *connState) clientAuth() []byte {
	if c.replayState == nil {
		return nil
	}
	return c.authRaw
}

// answerHere answers the commands the proxy answers itself (done), given
// the state before them; for a HELLO with the proxy password it returns
// the HELLO to forward without its AUTH.
func (c connState) answerHere(kind cmdKind, refuse string, args [][]byte, env cmdEnv) (next connState, v verdict, helloFwd []byte, done bool) {
	silent := c.silent()
	v = verdict{kind: kind, local: true}
	local := func(reply string, s bool) (connState, verdict, []byte, bool) {
		v.reply, v.silent = reply, s
		return c, v, nil, true
	}
	needAuth := env.needAuth()

	// answered here, no backend needed
	if needAuth && !c.authed && kind != cmdAuth && kind != cmdHello && kind != cmdQuit {
		return local(ReplyNoAuth, false)
	}
	switch {
	case kind == cmdQuit:
		c.skipNext = false
		v.closeAfter = true
		return local("+OK\r\n", silent)
	case kind == cmdClient && lookupClientSub(args) == clientMaint:
		// Server-pushed maintenance notices (go-redis asks for them after
		// HELLO 3) describe moves of the server behind the proxy, which the
		// proxy makes itself. Answered as by a Redis without them, which
		// clients accept and go on.
		c.skipNext = false
		return local("-ERR unknown subcommand '"+string(args[1])+"'. Try CLIENT HELP.\r\n", silent)
	case kind == cmdRefused:
		c.skipNext = false
		c.multiDirty = c.multiDirty || c.inMulti
		return local(refuse, silent)
	case kind == cmdAuth && needAuth:
		c.skipNext = false
		switch {
		case len(args) != 2 && len(args) != 3:
			return local("-ERR wrong number of arguments for 'auth' command\r\n", silent)
		case env.checkPassword(args[1:]):
			c.authed = true
			return local("+OK\r\n", silent)
		default:
			return local(ReplyWrongPass, silent)
		}
	case kind == cmdHello && needAuth:
		fwd, creds, ok := splitHelloAuth(args)
		if !ok {
			return local("-ERR Syntax error in HELLO option 'auth'\r\n", false)
		}
		if creds != nil && !env.checkPassword(creds) {
			return local(ReplyWrongPass, false)
		}
		if creds == nil && !c.authed {
			return local(ReplyNoAuth, false)
		}
		helloFwd = fwd
	case isPubsubKind(kind) && c.inMulti:
		c.multiDirty = true
		return local(ReplySubscribeInMulti, silent)
	}
	return c, verdict{}, helloFwd, false
}
