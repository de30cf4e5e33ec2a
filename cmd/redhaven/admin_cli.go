package main

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
)

// The CLI side of the admin actions that run on the leader (a follower's
// agent forwards them) and of the cluster key rotation. Each run* here
// takes the parsed connection flags (apiRun), so that it fits a command
// table entry as commands.go's table entries.

// apiRun is a command body that talks to an agent.
type apiRun func(o *apiOpts, args []string, stdout, stderr io.Writer) int

// actedResult is the JSON answer of an admin action.
type actedResult struct {
	Message   string   `json:"message"`
	Node      string   `json:"node"`      // the node that carried it out
	Forwarded bool     `json:"forwarded"` // the agent asked forwarded it to the leader
	ID        uint64   `json:"id"`        // failover: the request's ID (0 from older agents)
	Keys      []keyRow `json:"keys"`
}

// keyRow is one node's key ring, as fingerprints.
type keyRow struct {
	Node    string   `json:"node"`
	Primary string   `json:"primary"`
	Keys    []string `json:"keys"`
	Error   string   `json:"error"`
}

// printActed prints an action's message and which node carried it out.
func printActed(w io.Writer, r actedResult) {
	fmt.Fprintln(w, r.Message)
	switch {
	case r.Forwarded:
		fmt.Fprintf(w, "carried out by the leader %s (the agent asked forwarded it)\n", r.Node)
	case r.Node != "":
		fmt.Fprintf(w, "carried out by %s\n", r.Node)
	}
}

// runRouteReset: `redhaven route reset` clears the committed route (one
// that the watchers contradict, or whose epoch no Sentinel reaches) so
// that routing follows Sentinel again. It names the route it read, so a
// route committed in between is left alone (409).
//
// With several services, SERVICE names the one (the agent finds it by the
// route named).
func runRouteReset(o *apiOpts, args []string, stdout, stderr io.Writer) int {
	c, err := newAPIClient(o)
	if err != nil {
		return fail(stderr, "route reset", err)
	}
	var s apiStats
	if err := c.do("GET", "/api/v1/stats", nil, &s); err != nil {
		return fail(stderr, "route reset", err)
	}
	name := ""
	if len(args) > 0 {
		name = args[0]
	}
	r, err := serviceRoute(s, name)
	if err != nil {
		fmt.Fprintf(stderr, "redhaven route reset: %v\n", err)
		return exitUsage
	}
	if r.Master == "" && r.Epoch == 0 {
		fmt.Fprintln(stdout, "no committed route: nothing to reset")
		return exitOK
	}
	fmt.Fprintf(stdout, "committed route: master %s, epoch %d (%s)\n", orNone(r.Master), r.Epoch, r.Reason)
	var out actedResult
	body := map[string]any{"master": r.Master, "epoch": r.Epoch}
	if err := c.do("POST", "/api/v1/route/reset", body, &out); err != nil {
		return fail(stderr, "route reset", err)
	}
	printActed(stdout, out)
	return exitOK
}

// runBackendState sets a Redis backend's admin state (ready, drain or
// maintenance), as the page's backend buttons do: `redhaven backend drain
// 10.0.0.12:6379`. Committed through Raft by the leader.
func runBackendState(state string) apiRun {
	return func(o *apiOpts, args []string, stdout, stderr io.Writer) int {
		if len(args) != 1 {
			fmt.Fprintf(stderr, "redhaven backend %s: give exactly one backend address host:port (see the stats page or status)\n", state)
			return 2
		}
		c, err := newAPIClient(o)
		if err != nil {
			return fail(stderr, "backend "+state, err)
		}
		var s apiStats
		if err := c.do("GET", "/api/v1/stats", nil, &s); err != nil {
			return fail(stderr, "backend "+state, err)
		}
		var out actedResult
		body := map[string]string{"state": state, "service": backendService(s, args[0])}
		if err := c.do("POST", "/api/v1/backends/"+url.PathEscape(args[0])+"/state", body, &out); err != nil {
			return fail(stderr, "backend "+state, err)
		}
		printActed(stdout, out)
		return exitOK
	}
}

// backendService is the service whose Redis nodes include addr when the
// agent routes several ("" otherwise: the only one, or none, which the
// agent answers with the services there are).
func backendService(s apiStats, addr string) string {
	if len(s.Services) < 2 {
		return ""
	}
	for _, sv := range s.Services {
		for _, b := range sv.Backends {
			if b.Addr == addr {
				return sv.Name
			}
		}
	}
	return ""
}

// runKeysOp runs one key operation on every member and prints each
// node's ring; exit 1 when a node failed (run the step again).
func runKeysOp(op string) apiRun {
	return func(o *apiOpts, args []string, stdout, stderr io.Writer) int {
		if len(args) > 0 {
			fmt.Fprintf(stderr, "redhaven keys %s: unexpected argument (the key is read from the terminal or standard input, never from the command line)\n", op)
			return 2
		}
		body := map[string]string{"op": op}
		if op != "list" {
			key, err := readKey(os.Stdin, stderr)
			if err != nil {
				return fail(stderr, "keys "+op, err)
			}
			body["key"] = key
		}
		c, err := newAPIClient(o)
		if err != nil {
			return fail(stderr, "keys "+op, err)
		}
		var out actedResult
		err = c.do("POST", "/api/v1/keys", body, &out)
		if len(out.Keys) > 0 {
			w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NODE\tPRIMARY\tINSTALLED\tERROR")
			for _, k := range out.Keys {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", k.Node, orNone(k.Primary), strings.Join(k.Keys, ","), k.Error)
			}
			w.Flush()
		}
		if err != nil {
			return fail(stderr, "keys "+op, err)
		}
		fmt.Fprintln(stdout, out.Message)
		if op == "use" {
			fmt.Fprintln(stdout, "a restarted node reads its keys from its config file: make this key cluster.encrypt on every node")
		}
		return exitOK
	}
}

// readKey reads a cluster key from the terminal without echo, or the first
// line of in.
func readKey(in *os.File, prompt io.Writer) (string, error) {
	if isTerminal(in) {
		fmt.Fprint(prompt, "cluster key: ")
		restore, err := noEcho(in)
		if err != nil {
			return "", err
		}
		defer func() { restore(); fmt.Fprintln(prompt) }()
	}
	k, err := readLine(in)
	if err != nil {
		return "", errors.New("no cluster key on standard input (redhaven keygen makes one)")
	}
	return strings.TrimSpace(k), nil
}
