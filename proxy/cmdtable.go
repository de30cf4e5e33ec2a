package proxy

import (
	"bytes"
	"strings"
)

// cmdClass is how the proxy carries a command.
type cmdClass uint8

const (
	// classShared: forwarded as it came; on a shared backend connection
	// (proxy.multiplex) when the session has no state of its own.
	classShared cmdClass = iota
	// classOwn: the session moves to a backend connection of its own for
	// good, because the command blocks the connection, or its effect or
	// answer belongs to the connection (row.why says which).
	classOwn
	// classRefused: answered with an error naming why (row.why); never
	// reaches Redis.
	classRefused
	// classProxy: answered by the proxy itself.
	classProxy
)

var classNames = [...]string{classShared: "shared", classOwn: "own", classRefused: "refused", classProxy: "proxy"}

func (c cmdClass) String() string { return classNames[c] }

// cmdRow is one command of the table: a command, or a subcommand named
// as Redis's COMMAND INFO names it ("client|kill").
type cmdRow struct {
	name  string
	class cmdClass
	kind  cmdKind // how a session follows it; cmdPlain: one reply, no state
	why   string
	// deny: in proxy.deny_commands by default (refused with why until an
	// operator allows it; class is how it is carried then)
	deny bool
	// noMulti: Redis itself refuses it inside MULTI ("Command not allowed
	// inside a transaction"); there it is forwarded so the client gets
	// Redis's own error, whatever the deny list says
	noMulti bool
}

// sharedCommands are the commands and subcommands of Redis 7.x that any
// shared connection carries as they are: one reply, and no state of the
// connection read or changed (or state the session never has while it is
// on a shared connection). TestEveryCommandClassified checks that the
// table covers every command of the redis-server the tests start.
var sharedCommands = strings.Fields(`
	acl|cat acl|dryrun acl|genpass acl|getuser acl|help acl|list acl|log acl|save acl|users 
	acl|whoami append asking bgrewriteaof bgsave bitcount bitfield bitfield_ro bitop bitpos 
	command|count command|docs command|getkeys command|getkeysandflags command|help 
	command|info command|list copy dbsize decr decrby del dump echo eval eval_ro evalsha 
	evalsha_ro exists expire expireat expiretime fcall fcall_ro flushall flushdb 
	function|delete function|dump function|flush function|help function|list function|load 
	function|restore function|stats geoadd geodist geohash geopos georadius georadius_ro 
	georadiusbymember georadiusbymember_ro geosearch geosearchstore get getbit getdel getex 
	getrange getset hdel hexists hget hgetall hincrby hincrbyfloat hkeys hlen hmget hmset 
	hrandfield hscan hset hsetnx hstrlen hvals incr incrby incrbyfloat info keys lastsave 
	latency|doctor latency|graph latency|help latency|histogram latency|history 
	latency|latest latency|reset lcs lindex linsert llen lmove lmpop lolwut lpop lpos lpush 
	lpushx lrange lrem lset ltrim memory|doctor memory|help memory|malloc-stats memory|purge 
	memory|stats memory|usage mget migrate module|help module|list module|load module|loadex 
	module|unload move mset msetnx object|encoding object|freq object|help object|idletime 
	object|refcount persist pexpire pexpireat pexpiretime pfadd pfcount pfdebug pfmerge 
	pfselftest ping psetex pttl publish pubsub|channels pubsub|help pubsub|numpat 
	pubsub|numsub pubsub|shardchannels pubsub|shardnumsub randomkey rename renamenx restore 
	restore-asking role rpop rpoplpush rpush rpushx sadd save scan scard script|exists 
	script|flush script|help script|load sdiff sdiffstore set setbit setex setnx setrange 
	sinter sintercard sinterstore sismember slowlog|get slowlog|help slowlog|len 
	slowlog|reset smembers smismember smove sort sort_ro spop spublish srandmember srem sscan 
	strlen substr sunion sunionstore swapdb time touch ttl type unlink xack xadd xautoclaim 
	xclaim xdel xgroup|create xgroup|createconsumer xgroup|delconsumer xgroup|destroy 
	xgroup|help xgroup|setid xinfo|consumers xinfo|groups xinfo|help xinfo|stream xlen 
	xpending xrange xrevrange xsetid xtrim zadd zcard zcount zdiff zdiffstore zincrby zinter 
	zintercard zinterstore zlexcount zmpop zmscore zpopmax zpopmin zrandmember zrange 
	zrangebylex zrangebyscore zrangestore zrank zrem zremrangebylex zremrangebyrank 
	zremrangebyscore zrevrange zrevrangebylex zrevrangebyscore zrevrank zscan zscore zunion 
	zunionstore 	client|getname client|help client|list client|unpause client|setinfo
	config|get config|help config|resetstat config|rewrite config|set
	hexpire hexpireat hexpiretime hpersist hpexpire hpexpireat hpexpiretime hpttl httl
`)

const (
	whyBlocks     = "blocks the connection until data arrives"
	whyState      = "connection state, replayed on every new backend connection"
	whyTx         = "transaction state belongs to the connection"
	whyPubsub     = "puts the connection in subscribed mode; subscriptions replayed"
	whyClientConn = "names or acts on the client's own connection (a shared one would be other clients')"
	whyCluster    = "redhaven fronts a non-cluster deployment"
	whyRepl       = "replication protocol: only replicas speak it"
	whyTopology   = "changes the HA setup behind Sentinel's back"
)

// specialCommands are the commands that are not simply shared.
var specialCommands = []cmdRow{
	{name: "quit", class: classProxy, kind: cmdQuit, why: "answered +OK by the proxy, connection closed after earlier replies"},

	// session state, replayed on a new backend connection
	{name: "auth", class: classOwn, kind: cmdAuth, why: "authentication belongs to the connection (checked by the proxy in proxy.password mode)"},
	{name: "hello", class: classOwn, kind: cmdHello, why: "protocol, AUTH and SETNAME belong to the connection (HELLO 2|3 alone picks the shared connection of that protocol)"},
	{name: "select", class: classOwn, kind: cmdSelect, why: whyState},
	{name: "readonly", class: classOwn, kind: cmdReadonly, why: whyState},
	{name: "readwrite", class: classOwn, kind: cmdReadwrite, why: whyState},
	{name: "reset", class: classOwn, kind: cmdReset, why: "resets the connection; the session then takes a fresh one"},
	{name: "multi", class: classOwn, kind: cmdMulti, why: whyTx},
	{name: "exec", class: classOwn, kind: cmdExec, why: whyTx},
	{name: "discard", class: classOwn, kind: cmdDiscard, why: whyTx},
	{name: "watch", class: classOwn, kind: cmdWatch, why: whyTx},
	{name: "unwatch", class: classOwn, kind: cmdUnwatch, why: whyTx},
	{name: "subscribe", class: classOwn, kind: cmdSubscribe, why: whyPubsub},
	{name: "psubscribe", class: classOwn, kind: cmdPsubscribe, why: whyPubsub},
	{name: "ssubscribe", class: classOwn, kind: cmdSsubscribe, why: whyPubsub},
	{name: "unsubscribe", class: classOwn, kind: cmdUnsubscribe, why: whyPubsub},
	{name: "punsubscribe", class: classOwn, kind: cmdPunsubscribe, why: whyPubsub},
	{name: "sunsubscribe", class: classOwn, kind: cmdSunsubscribe, why: whyPubsub},
	{name: "monitor", class: classOwn, kind: cmdMonitor, why: "streams every command of the server on the connection until RESET or QUIT"},

	// blocking
	{name: "blpop", class: classOwn, why: whyBlocks},
	{name: "brpop", class: classOwn, why: whyBlocks},
	{name: "brpoplpush", class: classOwn, why: whyBlocks},
	{name: "blmove", class: classOwn, why: whyBlocks},
	{name: "blmpop", class: classOwn, why: whyBlocks},
	{name: "bzpopmin", class: classOwn, why: whyBlocks},
	{name: "bzpopmax", class: classOwn, why: whyBlocks},
	{name: "bzmpop", class: classOwn, why: whyBlocks},
	{name: "xread", class: classOwn, why: whyBlocks + " (BLOCK; not parsed: always moved)"},
	{name: "xreadgroup", class: classOwn, why: whyBlocks + " (BLOCK; not parsed: always moved)"},
	{name: "wait", class: classOwn, why: "blocks, and counts the connection's own writes"},
	{name: "waitaof", class: classOwn, why: "blocks, and counts the connection's own writes"},

	// scripts
	{name: "script|debug", class: classOwn, why: "puts the connection in the Lua debugger: it would catch other clients' scripts"},
	{name: "script|kill", class: classOwn, why: "must reach Redis while a shared connection waits behind the busy script"},
	{name: "function|kill", class: classOwn, why: "must reach Redis while a shared connection waits behind the busy function"},

	// CLIENT: the subcommand decides
	{name: "client|caching", class: classOwn, kind: cmdClient, why: "client-side caching belongs to the connection"},
	{name: "client|getredir", class: classOwn, kind: cmdClient, why: "client-side caching belongs to the connection"},
	{name: "client|trackinginfo", class: classOwn, kind: cmdClient, why: "client-side caching belongs to the connection"},
	{name: "client|tracking", class: classOwn, kind: cmdClient, why: "client-side caching belongs to the connection; replayed"},
	{name: "client|id", class: classOwn, kind: cmdClient, why: whyClientConn},
	{name: "client|info", class: classOwn, kind: cmdClient, why: whyClientConn},
	{name: "client|kill", class: classOwn, kind: cmdClient, why: whyClientConn + " (SKIPME, ID of the caller)"},
	{name: "client|unblock", class: classOwn, kind: cmdClient, why: whyClientConn + " (the id a blocked client got from CLIENT ID)"},
	{name: "client|pause", class: classOwn, kind: cmdClient, why: "the pausing client is not paused itself; a shared connection's other clients would be"},
	{name: "client|no-evict", class: classOwn, kind: cmdClient, why: whyClientConn + "; replayed"},
	{name: "client|no-touch", class: classOwn, kind: cmdClient, why: whyClientConn + "; replayed"},
	{name: "client|reply", class: classOwn, kind: cmdClient, why: "changes which replies the connection gets"},
	{name: "client|setname", class: classOwn, kind: cmdClient, why: whyClientConn + "; replayed"},

	// authentication changes (kind cmdAdmin: shared connections retired
	// once Redis accepts them, see mux.go)
	{name: "acl|setuser", class: classOwn, kind: cmdAdmin, why: "changes authentication: shared connections are retired when it is answered"},
	{name: "acl|deluser", class: classOwn, kind: cmdAdmin, why: "changes authentication: shared connections are retired when it is answered"},
	{name: "acl|load", class: classOwn, kind: cmdAdmin, why: "changes authentication: shared connections are retired when it is answered"},

	// refused by default (proxy.deny_commands); carried as class says when allowed
	{name: "replicaof", class: classShared, why: whyTopology, deny: true},
	{name: "slaveof", class: classShared, why: whyTopology, deny: true},
	{name: "failover", class: classShared, why: whyTopology + " (use `redhaven failover`)", deny: true},
	{name: "shutdown", class: classOwn, why: "stops the master behind Sentinel's back", deny: true, noMulti: true},
	{name: "debug", class: classOwn, why: "can crash or stall the server (DEBUG SLEEP would hold a shared connection)", deny: true},

	// always refused
	{name: "sync", class: classRefused, why: whyRepl, noMulti: true},
	{name: "psync", class: classRefused, why: whyRepl, noMulti: true},
	{name: "replconf", class: classRefused, why: whyRepl},
}

// clusterSubcommands: CLUSTER is refused whole (no subcommand of it means
// anything behind redhaven).
var clusterSubcommands = strings.Fields(`addslots addslotsrange bumpepoch count-failure-reports
	countkeysinslot delslots delslotsrange failover flushslots forget getkeysinslot help info
	keyslot links meet myid myshardid nodes replicas replicate reset saveconfig set-config-epoch
	setslot shards slaves slots`)

// allCommands is the whole table: specialCommands, CLUSTER, then the
// shared commands.
func allCommands() []cmdRow {
	rows := append([]cmdRow(nil), specialCommands...)
	for _, sub := range clusterSubcommands {
		rows = append(rows, cmdRow{name: "cluster|" + sub, class: classRefused, why: whyCluster})
	}
	for _, name := range sharedCommands {
		rows = append(rows, cmdRow{name: name})
	}
	// the container's kind for its subcommands: CLIENT is followed by
	// connState (REPLY, SETNAME...), CONFIG and ACL may change
	// authentication (authChange)
	for i := range rows {
		container, _, ok := strings.Cut(rows[i].name, "|")
		if !ok || rows[i].kind != cmdPlain {
			continue
		}
		switch container {
		case "client":
			rows[i].kind = cmdClient
		case "config", "acl":
			rows[i].kind = cmdAdmin
		}
	}
	return rows
}

// commandSpec is what a session needs to know of a command: one entry of
// a cmdIndex.
type commandSpec struct {
	name  string // table name, "client|kill" for a subcommand
	kind  cmdKind
	own   bool // needs a connection of its own (classOwn)
	bySub bool // a command whose subcommands differ: resolve with the arguments
	// refuse is the whole error reply when the command is refused (kind
	// cmdRefused)
	refuse    string
	label     string // the refused command as counted and logged ("config set masterauth")
	noMulti   bool   // see cmdRow.noMulti
	configSet bool   // CONFIG SET: its keys are checked against the deny list
	configGet bool   // CONFIG GET: secrets hidden in proxy.password mode
}

var plainSpec = commandSpec{kind: cmdPlain}

// cmdIndex finds a command's spec by name: the table with one server's
// deny list applied.
type cmdIndex struct {
	m map[string]*commandSpec
	// deniedKeys are the CONFIG SET keys proxy.deny_commands refuses
	// (lower case), each with its reply
	deniedKeys map[string]string
	// containers are the commands with subcommands
	containers map[string]bool
	// byLen holds the commands (not subcommands) that are not plain
	// shared ones, by name length: the fast path's lookup is a few
	// compares, no hashing (most commands are in no list)
	byLen [maxCmdName + 1][]*commandSpec
}

// maxCmdName bounds the names looked up (longer ones are unknown).
const maxCmdName = 64

// newCmdIndex builds the index for a deny list (see parseDeny).
func newCmdIndex(deny denyList) *cmdIndex {
	ix := &cmdIndex{m: map[string]*commandSpec{}, deniedKeys: map[string]string{}, containers: map[string]bool{}}
	rows := allCommands()
	subs := map[string][]*commandSpec{}
	for _, r := range rows {
		// HELLO: sharedOK decides (HELLO 2|3 alone stays shared)
		sp := &commandSpec{name: r.name, kind: r.kind, own: r.class == classOwn && r.kind != cmdHello, noMulti: r.noMulti}
		container, _, isSub := strings.Cut(r.name, "|")
		switch {
		case r.class == classRefused:
			sp.kind, sp.refuse, sp.label = cmdRefused, replyRefused(r.name, r.why), displayName(r.name)
		case deny.cmds[r.name]:
			sp.kind, sp.refuse, sp.label = cmdRefused, replyDenied(r.name, r.name, r.why), displayName(r.name)
		case isSub && deny.cmds[container]:
			sp.kind, sp.refuse, sp.label = cmdRefused, replyDenied(r.name, container, r.why), displayName(r.name)
		}
		switch r.name {
		case "config|set":
			sp.configSet = true
		case "config|get":
			sp.configGet = true
		}
		ix.m[r.name] = sp
		if isSub {
			subs[container] = append(subs[container], sp)
		}
	}
	for container, list := range subs {
		// a container whose subcommands are all carried alike needs no
		// look at its arguments (the fast path takes it)
		first := *list[0]
		same := true
		for _, sp := range list[1:] {
			if sp.kind != first.kind || sp.own != first.own || (sp.refuse == "") != (first.refuse == "") || sp.configSet || sp.configGet || first.configSet || first.configGet {
				same = false
			}
		}
		var sp commandSpec
		switch {
		case same && first.kind == cmdRefused:
			sp = first
			sp.refuse = strings.Replace(first.refuse, displayName(first.name), container, 1)
			sp.label = container
		case same:
			sp = first
		default:
			// unknown subcommands go as plain commands (Redis answers them)
			sp = commandSpec{kind: list[0].kind, bySub: true}
			if sp.kind == cmdRefused || sp.kind == cmdQuit {
				sp.kind = cmdPlain
			}
			if container == "client" {
				sp.kind = cmdClient
			}
			if container == "config" || container == "acl" {
				sp.kind = cmdAdmin
			}
			if deny.cmds[container] {
				sp.kind, sp.refuse, sp.label = cmdRefused, replyDenied(container, container, ""), container
			}
		}
		sp.name = container
		ix.m[container] = &sp
		ix.containers[container] = true
	}
	for key := range deny.configKeys {
		ix.deniedKeys[key] = replyDeniedConfig(key)
	}
	for name, sp := range ix.m {
		if !strings.Contains(name, "|") && len(name) <= maxCmdName && *sp != (commandSpec{name: name}) {
			ix.byLen[len(name)] = append(ix.byLen[len(name)], sp)
		}
	}
	return ix
}

// defaultIndex is the table with the default deny list.
var defaultIndex = newCmdIndex(mustParseDeny(DefaultDenyCommands))

// lookupCommand finds a command in the default index (tests).
func lookupCommand(name []byte) commandSpec { return *defaultIndex.lookup(name) }

// lookup finds a command name (any case); a shared or unknown one is
// plainSpec. No allocation: the fast path calls it for every command.
func (ix *cmdIndex) lookup(name []byte) *commandSpec {
	if len(name) > maxCmdName {
		return &plainSpec
	}
	for _, sp := range ix.byLen[len(name)] {
		if equalFold(name, sp.name) {
			return sp
		}
	}
	return &plainSpec
}

func lowerInto(dst, src []byte) int {
	for i, c := range src {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst[i] = c
	}
	return len(src)
}

// resolve finds the spec of a parsed command: its subcommand's where the
// subcommands differ, refused when CONFIG SET names a denied key.
func (ix *cmdIndex) resolve(args [][]byte) commandSpec {
	sp := *ix.lookup(args[0])
	if sp.bySub && len(args) >= 2 && len(args[0])+1+len(args[1]) <= maxCmdName {
		var buf [maxCmdName]byte
		n := lowerInto(buf[:], args[0])
		buf[n] = '|'
		n++
		n += lowerInto(buf[n:], args[1])
		if sub := ix.m[string(buf[:n])]; sub != nil {
			sp = *sub
		}
	}
	if sp.configSet && len(ix.deniedKeys) > 0 {
		for i := 2; i < len(args); i += 2 {
			if len(args[i]) > maxCmdName {
				continue
			}
			var buf [maxCmdName]byte
			n := lowerInto(buf[:], args[i])
			if reply, ok := ix.deniedKeys[string(buf[:n])]; ok {
				sp.kind, sp.refuse, sp.label = cmdRefused, reply, "config set "+string(buf[:n])
				break
			}
		}
	}
	return sp
}

// isContainer says whether a command has subcommands in the table.
func isContainer(name []byte) bool {
	var buf [maxCmdName]byte
	if len(name) > len(buf) {
		return false
	}
	n := lowerInto(buf[:], name)
	return defaultIndex.containers[string(buf[:n])]
}

// displayName is a table name as a client writes it ("client kill").
func displayName(name string) string { return strings.ReplaceAll(name, "|", " ") }

// knownCommand says whether name ("client", "client|kill") is in the table.
func knownCommand(name string) bool { return tableNames[name] }

// tableNames are the table's commands, subcommands and containers.
var tableNames = func() map[string]bool {
	m := map[string]bool{}
	for _, r := range allCommands() {
		m[r.name] = true
		if container, _, ok := strings.Cut(r.name, "|"); ok {
			m[container] = true
		}
	}
	return m
}()

// rereadCommands may be sent again when the shared connection they were
// sent on died before their reply (session.backendGone): commands Redis
// 7.x flags readonly and not blocking (COMMAND INFO), without scripts
// (EVAL_RO and friends may run long), containers and TOUCH, plus PING and
// ECHO. Writes are never sent twice: their outcome is unknown.
// TestRereadCommandsReadOnly checks the flags against the test server.
var rereadCommands = func() map[string]bool {
	m := map[string]bool{}
	for _, name := range strings.Fields(`
	bitcount bitfield_ro bitpos dbsize dump exists expiretime geodist geohash geopos
	georadius_ro georadiusbymember_ro geosearch get getbit getrange hexists hget hgetall hkeys
	hlen hmget hrandfield hscan hstrlen hvals keys lcs lindex llen lpos lrange mget
	pexpiretime pfcount pttl randomkey scan scard sdiff sinter sintercard sismember smembers
	smismember sort_ro srandmember sscan strlen substr sunion ttl type xlen xpending xrange
	xrevrange zcard zcount zdiff zinter zintercard zlexcount zmscore zrandmember zrange
	zrangebylex zrangebyscore zrank zrevrange zrevrangebylex zrevrangebyscore zrevrank zscan
	zscore zunion ping echo`) {
		m[name] = true
	}
	return m
}()

// rereadable says whether cmd (a RESP multibulk command) is in
// rereadCommands.
func rereadable(cmd []byte) bool {
	i := bytes.IndexByte(cmd, '\n') + 1
	j := bytes.IndexByte(cmd[i:], '\n')
	if i <= 0 || j < 3 || cmd[i] != '$' {
		return false
	}
	n, ok := parseLen(cmd[i+1 : i+j-1])
	start := i + j + 1
	if !ok || n <= 0 || n > maxCmdName || start+n > len(cmd) {
		return false
	}
	var buf [maxCmdName]byte
	k := lowerInto(buf[:], cmd[start:start+n])
	return rereadCommands[string(buf[:k])]
}
