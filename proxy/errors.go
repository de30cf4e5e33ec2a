package proxy

import (
	"errors"
	"fmt"
	"time"
)

// Error replies the proxy itself sends to clients. The texts are stable:
// clients and operators may match on them.
const (
	// ReplyNoAuth answers commands sent before AUTH when proxy.password is set.
	ReplyNoAuth = "-NOAUTH Authentication required.\r\n"
	// ReplyWrongPass answers a wrong proxy password.
	ReplyWrongPass = "-WRONGPASS invalid username-password pair or user is disabled\r\n"
	// ReplyMaxClients is sent to a client refused by proxy.max_clients, then the connection is closed.
	ReplyMaxClients = "-ERR max number of clients reached\r\n"
	// ReplyLostMaster answers each command that was in flight to the master
	// when the connection to it broke: it may or may not have run.
	ReplyLostMaster = "-ERR redhaven: connection to master lost, command outcome unknown\r\n"
	// ReplyLostReplica is the same on the read-only listener.
	ReplyLostReplica = "-ERR redhaven: connection to replica lost, command outcome unknown\r\n"
	// ReplyExecAbortMoved answers EXEC when the session moved to another
	// master between MULTI and EXEC: nothing of the transaction ran.
	ReplyExecAbortMoved = "-EXECABORT redhaven: transaction discarded, master changed during MULTI\r\n"
	// ReplyExecAbortDirty answers EXEC after the proxy refused a command
	// inside the transaction (as Redis does after a queueing error).
	ReplyExecAbortDirty = "-EXECABORT Transaction discarded because of previous errors.\r\n"
	// ReplySubscribeInMulti refuses (P|S)(UN)SUBSCRIBE inside MULTI.
	ReplySubscribeInMulti = "-ERR redhaven: subscribe commands are not allowed inside MULTI\r\n"
)

// replyMasterDown is the -MASTERDOWN reply after a command waited
// hold_timeout for a master (or, on the read-only listener, for a replica).
func replyMasterDown(readonly bool, hold time.Duration) string {
	if readonly {
		return fmt.Sprintf("-MASTERDOWN redhaven: no replica or master available (held %v)\r\n", hold)
	}
	return fmt.Sprintf("-MASTERDOWN redhaven: no master available (held %v)\r\n", hold)
}

func replyTooLarge(max int64) string {
	return fmt.Sprintf("-ERR request too large (max %d bytes)\r\n", max)
}

// ErrAlreadyRunning is returned by a second call of Server.Run.
var ErrAlreadyRunning = errors.New("proxy: Run called twice")

// errProtocol is a client protocol error; its text follows "Protocol error: ".
type errProtocol struct{ msg string }

func (e *errProtocol) Error() string { return "Protocol error: " + e.msg }

// errTooLarge is a request above proxy.max_request_bytes.
type errTooLarge struct{ max int64 }

func (e *errTooLarge) Error() string { return fmt.Sprintf("request too large (max %d bytes)", e.max) }
