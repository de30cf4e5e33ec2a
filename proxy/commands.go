package proxy

// cmdKind says how a session treats a command. Most commands are plain:
// forwarded as they came, one reply each.
type cmdKind uint8

const (
	cmdPlain        cmdKind = iota
	cmdRefused              // answered by the proxy with replyRefused
	cmdAuth                 // proxy password check, or passed through and replayed
	cmdHello                // protocol version (+ AUTH, SETNAME), replayed
	cmdSelect               // database, replayed
	cmdClient               // CLIENT: the subcommand decides (clientSub)
	cmdQuit                 // answered +OK by the proxy, then the connection closes
	cmdReset                // forwarded; the session then takes a fresh backend connection
	cmdMulti                // transaction state
	cmdExec                 // may be replaced by DISCARD (see DESIGN.md)
	cmdDiscard              //
	cmdWatch                // WATCH state is lost on a move: the next EXEC fails
	cmdUnwatch              //
	cmdSubscribe            // SUBSCRIBE: one confirmation per channel, tracked, replayed
	cmdPsubscribe           //
	cmdSsubscribe           //
	cmdUnsubscribe          // without arguments: one reply per subscribed channel
	cmdPunsubscribe         //
	cmdSunsubscribe         //
	cmdReadonly             // READONLY / READWRITE (cluster replicas), replayed
	cmdReadwrite            //
	cmdAdmin                // CONFIG, ACL: plain unless they change authentication (authChange)
	cmdMonitor              // MONITOR: the connection streams the server's commands until RESET
)

// authChange says whether a CONFIG or ACL command may change what a new
// connection must do to authenticate.
func authChange(args [][]byte) bool {
	if len(args) < 2 {
		return false
	}
	switch {
	case equalFold(args[0], "config"):
		if !equalFold(args[1], "set") {
			return false
		}
		for i := 2; i < len(args); i += 2 {
			if equalFold(args[i], "requirepass") {
				return true
			}
		}
	case equalFold(args[0], "acl"):
		return equalFold(args[1], "setuser") || equalFold(args[1], "deluser") || equalFold(args[1], "load")
	}
	return false
}

// logCommand names a command in a log line without its arguments, which
// may be secrets (AUTH, HELLO AUTH, ACL SETUSER): only the subcommand of
// commands whose second word is one.
func logCommand(kind cmdKind, args [][]byte) string {
	if len(args) == 0 {
		return ""
	}
	name := string(firstLine(args[0]))
	if len(args) > 1 && len(args[1]) <= 32 && (kind == cmdClient || kind == cmdAdmin || isContainer(args[0])) {
		name += " " + string(args[1])
	}
	return name
}

// equalFold compares b with the lower-case ASCII string s, ignoring b's case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// clientSub classifies CLIENT subcommands.
type clientSub uint8

const (
	clientOther   clientSub = iota
	clientReply             // CLIENT REPLY ON|OFF|SKIP
	clientSetname           // replayed
	clientReplay            // TRACKING, NO-EVICT, NO-TOUCH, SETINFO: replayed as sent
	clientMaint             // MAINT_NOTIFICATIONS: answered as an older Redis does (see session.go)
)

func lookupClientSub(args [][]byte) clientSub {
	if len(args) < 2 {
		return clientOther
	}
	switch sub := args[1]; {
	case equalFold(sub, "reply"):
		return clientReply
	case equalFold(sub, "setname"):
		return clientSetname
	case equalFold(sub, "tracking"), equalFold(sub, "no-evict"), equalFold(sub, "no-touch"), equalFold(sub, "setinfo"):
		return clientReplay
	case equalFold(sub, "maint_notifications"):
		return clientMaint
	}
	return clientOther
}

// pubsubFam is a family of subscriptions (the index of replayState.subs).
type pubsubFam uint8

const (
	famChannels pubsubFam = iota
	famPatterns
	famShards
	numFams
)

// pubsubFams says, once, which commands and confirmations belong to each
// family, and which command replays it.
var pubsubFams = [numFams]struct {
	sub, unsub         cmdKind
	subConf, unsubConf pubsubKind
	replay             string
}{
	famChannels: {cmdSubscribe, cmdUnsubscribe, psSubscribe, psUnsubscribe, "SUBSCRIBE"},
	famPatterns: {cmdPsubscribe, cmdPunsubscribe, psPsubscribe, psPunsubscribe, "PSUBSCRIBE"},
	famShards:   {cmdSsubscribe, cmdSunsubscribe, psSsubscribe, psSunsubscribe, "SSUBSCRIBE"},
}

// pubsubCmd says whether k is a (un)subscribe command, of which family,
// and whether it subscribes.
func pubsubCmd(k cmdKind) (fam pubsubFam, subscribe, ok bool) {
	for f := range pubsubFams {
		switch k {
		case pubsubFams[f].sub:
			return pubsubFam(f), true, true
		case pubsubFams[f].unsub:
			return pubsubFam(f), false, true
		}
	}
	return 0, false, false
}

// pubsubConfirms says whether a pub/sub frame kind confirms a (un)subscribe,
// of which family, and whether it subscribed.
func pubsubConfirms(k pubsubKind) (fam pubsubFam, subscribe, ok bool) {
	for f := range pubsubFams {
		switch k {
		case pubsubFams[f].subConf:
			return pubsubFam(f), true, true
		case pubsubFams[f].unsubConf:
			return pubsubFam(f), false, true
		}
	}
	return 0, false, false
}

func isPubsubKind(k cmdKind) bool {
	_, _, ok := pubsubCmd(k)
	return ok
}

// retryable says whether a command of this kind, answered -READONLY by a
// demoted master, may be sent again to the new master.
func retryable(k cmdKind) bool {
	switch k {
	case cmdPlain, cmdSelect, cmdClient, cmdAuth, cmdHello, cmdReadonly, cmdReadwrite:
		return true
	}
	return false
}
