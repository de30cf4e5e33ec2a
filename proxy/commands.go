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
)

// commandSpec is one row of the special-command table.
type commandSpec struct {
	name string // lower case
	kind cmdKind
	why  string
	own  bool // plain, but needs a connection of its own (ownConnTable)
}

// commandTable lists every command a session does not simply forward.
// Everything else is plain. Keep DESIGN.md in step with it.
var commandTable = []commandSpec{
	// session state, replayed on a new backend connection
	{"auth", cmdAuth, "checked against proxy.password, or passed through to Redis ACLs and replayed", false},
	{"hello", cmdHello, "protocol version (and its AUTH / SETNAME) replayed", false},
	{"select", cmdSelect, "database replayed", false},
	{"client", cmdClient, "SETNAME/TRACKING/NO-EVICT/NO-TOUCH/SETINFO replayed; REPLY OFF/SKIP changes how many replies to expect", false},
	{"readonly", cmdReadonly, "replayed", false},
	{"readwrite", cmdReadwrite, "replayed", false},
	{"reset", cmdReset, "forwarded, then the session takes a fresh backend connection with no state", false},
	{"quit", cmdQuit, "answered +OK by the proxy, connection closed after earlier replies", false},
	// transactions
	{"multi", cmdMulti, "tracked: a move during MULTI makes EXEC fail with EXECABORT", false},
	{"exec", cmdExec, "sent as DISCARD when the transaction cannot be trusted any more", false},
	{"discard", cmdDiscard, "ends the transaction", false},
	{"watch", cmdWatch, "tracked: a move after WATCH makes the next EXEC return a null reply", false},
	{"unwatch", cmdUnwatch, "clears WATCH", false},
	// pub/sub: replies do not match commands 1:1
	{"subscribe", cmdSubscribe, "one confirmation per channel; channels replayed", false},
	{"psubscribe", cmdPsubscribe, "one confirmation per pattern; patterns replayed", false},
	{"ssubscribe", cmdSsubscribe, "one confirmation per shard channel; replayed", false},
	{"unsubscribe", cmdUnsubscribe, "one confirmation per channel (all subscribed ones without arguments)", false},
	{"punsubscribe", cmdPunsubscribe, "as UNSUBSCRIBE, for patterns", false},
	{"sunsubscribe", cmdSunsubscribe, "as UNSUBSCRIBE, for shard channels", false},
	// refused: they act on the server or the replication topology, or
	// turn the connection into something the proxy cannot follow.
	{"shutdown", cmdRefused, "would stop the master behind the proxy", false},
	{"replicaof", cmdRefused, "topology changes belong to Sentinel and redhaven", false},
	{"slaveof", cmdRefused, "topology changes belong to Sentinel and redhaven", false},
	{"failover", cmdRefused, "use `redhaven failover`", false},
	{"debug", cmdRefused, "can crash or stall the server", false},
	{"monitor", cmdRefused, "a monitor stream does not survive a failover; connect to Redis directly", false},
	{"sync", cmdRefused, "replication protocol", false},
	{"psync", cmdRefused, "replication protocol", false},
	{"replconf", cmdRefused, "replication protocol", false},
	{"cluster", cmdRefused, "redhaven fronts a non-cluster deployment", false},
	// authentication changes: plain, except the subcommands authChange names
	{"config", cmdAdmin, "CONFIG SET requirepass: own connection; shared connections retired when answered (a new client must not inherit their authentication)", false},
	{"acl", cmdAdmin, "ACL SETUSER/DELUSER/LOAD: own connection; shared connections retired when answered", false},
}

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
	if len(args) > 1 && (kind == cmdClient || kind == cmdAdmin) && len(args[1]) <= 32 {
		name += " " + string(args[1])
	}
	return name
}

// ownConnTable lists the plain commands a shared backend connection
// (proxy.multiplex) cannot carry: they block the connection, or their
// effect or answer belongs to the connection. A session that sends one
// moves to a dedicated connection for good. Every command of
// commandTable that is forwarded (not answered or refused by the proxy)
// moves it too: they change connection state (AUTH, HELLO, SELECT,
// CLIENT, READONLY, RESET, MULTI/EXEC, WATCH, pub/sub). So does a command
// above 1 MiB (bigCommand), which would hold up everyone behind it.
var ownConnTable = []commandSpec{
	{name: "blpop", why: "blocks the connection"},
	{name: "brpop", why: "blocks the connection"},
	{name: "brpoplpush", why: "blocks the connection"},
	{name: "blmove", why: "blocks the connection"},
	{name: "blmpop", why: "blocks the connection"},
	{name: "bzpopmin", why: "blocks the connection"},
	{name: "bzpopmax", why: "blocks the connection"},
	{name: "bzmpop", why: "blocks the connection"},
	{name: "xread", why: "blocks the connection with BLOCK (not parsed: always moved)"},
	{name: "xreadgroup", why: "blocks the connection with BLOCK (not parsed: always moved)"},
	{name: "wait", why: "blocks, and counts the connection's own writes"},
	{name: "waitaof", why: "blocks, and counts the connection's own writes"},
}

// byLen indexes commandTable by name length: the lookup is a few
// case-insensitive compares, no map and no allocation.
var byLen [16][]commandSpec

func init() {
	for _, c := range commandTable {
		byLen[len(c.name)] = append(byLen[len(c.name)], c)
	}
	for _, c := range ownConnTable {
		c.kind, c.own = cmdPlain, true
		byLen[len(c.name)] = append(byLen[len(c.name)], c)
	}
}

var plainSpec = commandSpec{kind: cmdPlain}

// lookupCommand finds a command name (any case) in commandTable.
func lookupCommand(name []byte) commandSpec {
	if len(name) >= len(byLen) {
		return plainSpec
	}
	for _, c := range byLen[len(name)] {
		if equalFold(name, c.name) {
			return c
		}
	}
	return plainSpec
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
