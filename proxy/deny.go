package proxy

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultDenyCommands is the default of proxy.deny_commands: the commands
// that would change the HA setup behind Sentinel's back (a replica made
// master or the master made a replica without Sentinel knowing, a master
// stopped, the replication credentials or the failover priority changed)
// or crash or stall the server.
var DefaultDenyCommands = []string{
	"REPLICAOF", "SLAVEOF", "FAILOVER", "SHUTDOWN", "DEBUG",
	"CONFIG SET masterauth", "CONFIG SET masteruser",
	"CONFIG SET replica-priority", "CONFIG SET slave-priority",
	"CONFIG SET replica-announced",
	"CONFIG SET replica-announce-ip", "CONFIG SET slave-announce-ip",
	"CONFIG SET replica-announce-port", "CONFIG SET slave-announce-port",
	"CONFIG SET replicaof", "CONFIG SET slaveof",
}

// denyList is proxy.deny_commands parsed: commands and subcommands by
// table name ("client|kill"), and CONFIG SET keys (lower case).
type denyList struct {
	cmds       map[string]bool
	configKeys map[string]bool
}

// parseDeny parses proxy.deny_commands entries: "COMMAND",
// "COMMAND SUBCOMMAND" or "CONFIG SET key" (any case). A command that is
// not in the table is an error, so a typo does not let a command through.
func parseDeny(entries []string) (denyList, error) {
	d := denyList{cmds: map[string]bool{}, configKeys: map[string]bool{}}
	var errs []error
	for _, e := range entries {
		f := strings.Fields(strings.ToLower(e))
		switch {
		case len(f) == 0:
			// an empty entry (REDHAVEN_PROXY__DENY_COMMANDS="") denies nothing
		case len(f) == 3 && f[0] == "config" && f[1] == "set":
			d.configKeys[f[2]] = true
		case len(f) == 1 && knownCommand(f[0]):
			d.cmds[f[0]] = true
		case len(f) == 2 && knownCommand(f[0]+"|"+f[1]):
			d.cmds[f[0]+"|"+f[1]] = true
		default:
			errs = append(errs, fmt.Errorf("proxy.deny_commands: unknown command %q (want a Redis command, \"COMMAND SUBCOMMAND\" or \"CONFIG SET key\")", e))
		}
	}
	return d, errors.Join(errs...)
}

func mustParseDeny(entries []string) denyList {
	d, err := parseDeny(entries)
	if err != nil {
		panic(err)
	}
	return d
}

// replyRefused is the reply to a command the proxy never lets through.
func replyRefused(name, why string) string {
	return fmt.Sprintf("-ERR command '%s' is not allowed through redhaven: %s\r\n", displayName(name), why)
}

// replyDenied is the reply to a command proxy.deny_commands refuses
// (entry: the entry that refuses it); it names the key that allows it.
func replyDenied(name, entry, why string) string {
	if why != "" {
		why = ": " + why
	}
	return fmt.Sprintf("-ERR command '%s' is not allowed through redhaven%s (remove %q from proxy.deny_commands to allow it)\r\n",
		displayName(name), why, strings.ToUpper(displayName(entry)))
}

// replyDeniedConfig refuses CONFIG SET of a denied key.
func replyDeniedConfig(key string) string {
	return fmt.Sprintf("-ERR 'CONFIG SET %s' is not allowed through redhaven: replication and failover settings belong to Sentinel and redhaven (remove \"CONFIG SET %s\" from proxy.deny_commands to allow it)\r\n", key, key)
}
