package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/redhaven/redhaven/node"
)

// The CLI's view of GET /api/v1/stats: only the fields it prints.
type apiStats struct {
	Node    string   `json:"node"`
	Version string   `json:"redhaven_version"`
	Ready   bool     `json:"ready"`
	Leader  bool     `json:"leader"`
	Route   apiRoute `json:"route"`
	Members []struct {
		Name        string  `json:"name"`
		Addr        string  `json:"addr"`
		GossipState string  `json:"gossip_state"`
		RaftRole    string  `json:"raft_role"`
		RaftAddr    string  `json:"raft_addr"`
		LastContact float64 `json:"last_contact_seconds"`
		Version     string  `json:"version"`
		IsLeader    bool    `json:"is_leader"`
	} `json:"members"`
	VIP apiVIP `json:"vip"`
	// Services: every service the agent routes (absent from agents
	// older than issue 14; the top-level route is then the one).
	Services []struct {
		Name     string   `json:"name"`
		Ready    bool     `json:"ready"`
		Route    apiRoute `json:"route"`
		Backends []struct {
			Addr string `json:"addr"`
		} `json:"backends"`
		VIP *apiVIP `json:"vip"` // the service's own VIP; nil: it shares the top-level one
		// PlannedFailover: the service's latest planned failover request
		// (absent from older agents, and before the first one).
		PlannedFailover *apiPlanned `json:"planned_failover"`
	} `json:"services"`
}

// apiPlanned is a planned failover request as the stats show it.
type apiPlanned struct {
	ID     uint64 `json:"id"`
	Status string `json:"status"` // pending, completed
	Result string `json:"result"` // "ok: ..." or "failed: <why>"
}

type apiVIP struct {
	Mode    string `json:"mode"`
	Address string `json:"address"`
	Holder  string `json:"holder"`
}

type apiRoute struct {
	Master string `json:"master"`
	Epoch  int64  `json:"epoch"`
	Reason string `json:"reason"`
}

// masterText is a committed route in words.
func masterText(r apiRoute) string {
	switch {
	case r.Master == "":
		return "none committed yet"
	case r.Reason != "":
		return fmt.Sprintf("%s (epoch %d, %s)", r.Master, r.Epoch, r.Reason)
	}
	return fmt.Sprintf("%s (epoch %d)", r.Master, r.Epoch)
}

// apiClient talks to an agent's HTTP API: by default the local agent over
// its admin socket (where the caller is an admin if the OS let it
// connect), or any agent over TCP with --addr (then admin actions need an
// http.auth admin user).
type apiClient struct {
	base       string // http://... ; "http://redhaven" over the socket
	socket     string // the admin socket, "" over TCP
	user, pass string
	http       *http.Client
}

// apiOpts are the connection flags shared by the sub-commands that talk to
// an agent.
type apiOpts struct {
	socket, addr, user string
}

// apiFlags registers the connection flags on fs. Their defaults do not
// depend on the machine (the man page is made from them): the socket and
// the user are resolved when the command runs.
func apiFlags(fs *pflag.FlagSet) *apiOpts {
	o := &apiOpts{}
	fs.StringVar(&o.socket, "socket", "", "the local agent's admin socket (default: http.admin_socket of the config file, else "+node.DefaultConfig().HTTP.AdminSocket+")")
	fs.StringVar(&o.addr, "addr", "", "talk HTTP to this agent instead of the socket, e.g. http://10.0.0.11:8404 (actions need --user)")
	fs.StringVar(&o.addr, "http", "", "same as --addr")
	_ = fs.MarkHidden("http")
	fs.StringVar(&o.user, "user", "", "http.auth user with --addr (default: $REDHAVEN_HTTP_USER); password from $REDHAVEN_HTTP_PASSWORD, else asked on the terminal")
	return o
}

// apiCommand registers the connection flags for a command that talks to
// an agent.
func apiCommand(run func(o *apiOpts, args []string, stdout, stderr io.Writer) int) func(*pflag.FlagSet) runFunc {
	return func(fs *pflag.FlagSet) runFunc {
		o := apiFlags(fs)
		return func(args []string, stdout, stderr io.Writer) int { return run(o, args, stdout, stderr) }
	}
}

// unreachable marks errors where the agent could not be reached (exit
// status 4).
type unreachable struct{ error }

// fail prints a command's error and returns its exit status.
func fail(stderr io.Writer, name string, err error) int {
	fmt.Fprintf(stderr, "redhaven %s: %v\n", name, err)
	if u := (unreachable{}); errors.As(err, &u) {
		return exitUnreachable
	}
	return exitError
}

// defaultSocket is http.admin_socket as the agent on this host would read
// it (config file, REDHAVEN_HTTP__ADMIN_SOCKET), or the built-in default
// when that cannot be read.
func defaultSocket() string {
	cfg, err := node.LoadConfig("", os.Environ(), nil)
	if err != nil || cfg.HTTP.AdminSocket == "" {
		return node.DefaultConfig().HTTP.AdminSocket
	}
	return cfg.HTTP.AdminSocket
}

func newAPIClient(o *apiOpts) (*apiClient, error) {
	if o.user == "" {
		o.user = os.Getenv("REDHAVEN_HTTP_USER")
	}
	if o.addr == "" {
		path := o.socket
		if path == "" {
			path = defaultSocket()
		}
		return &apiClient{base: "http://redhaven", socket: path, http: &http.Client{
			Timeout: 60 * time.Second,
			Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			}},
		}}, nil
	}
	base := o.addr
	if !strings.Contains(base, "://") {
		if strings.HasPrefix(base, ":") {
			base = "127.0.0.1" + base
		}
		base = "http://" + base
	}
	c := &apiClient{base: strings.TrimRight(base, "/"), user: o.user, http: &http.Client{Timeout: 60 * time.Second}}
	if o.user != "" {
		c.pass = os.Getenv("REDHAVEN_HTTP_PASSWORD")
		if c.pass == "" {
			pw, err := readPassword(os.Stdin, os.Stderr, "password for "+o.user+": ")
			if err != nil {
				return nil, fmt.Errorf("password for --user %s (or set REDHAVEN_HTTP_PASSWORD): %w", o.user, err)
			}
			c.pass = pw
		}
	}
	return c, nil
}

// where names what the client talks to, for errors.
func (c *apiClient) where() string {
	if c.socket != "" {
		return "the admin socket " + c.socket
	}
	return c.base
}

func (c *apiClient) do(method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var op *net.OpError
		switch {
		case c.socket != "" && errors.Is(err, syscall.EACCES):
			return unreachable{fmt.Errorf("cannot use %s: permission denied (run as root or as a member of the agent's group, e.g. sudo, or use --addr with --user)", c.where())}
		case c.socket != "" && errors.As(err, &op):
			return unreachable{fmt.Errorf("cannot reach the agent at %s (is it running? see --socket, or --addr for HTTP): %w", c.where(), err)}
		case errors.As(err, &op):
			return unreachable{fmt.Errorf("cannot reach the agent at %s (is it running? see --addr): %w", c.where(), err)}
		}
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode/100 != 2 {
		msg := strings.TrimSpace(string(b))
		var r struct{ Error string }
		if json.Unmarshal(b, &r) == nil && r.Error != "" {
			msg = r.Error
		}
		return fmt.Errorf("%s %s on %s: %s: %s", method, path, c.where(), resp.Status, msg)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: bad JSON: %w", method, path, err)
		}
	}
	return nil
}

func runStatus(o *apiOpts, _ []string, stdout, stderr io.Writer) int {
	var s apiStats
	if err := getStats(o, &s); err != nil {
		return fail(stderr, "status", err)
	}
	leader := "none: no Raft leader (the cluster has not formed yet, or has lost its quorum)"
	for _, m := range s.Members {
		if m.IsLeader {
			leader = m.Name
		}
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "node:\t%s (redhaven %s)\n", s.Node, s.Version)
	fmt.Fprintf(w, "leader:\t%s\n", leader)
	if len(s.Services) > 1 {
		// A line per service, then whether this node routes every one.
		for _, sv := range s.Services {
			fmt.Fprintf(w, "service %s:\t%s; routing %s\n", sv.Name, masterText(sv.Route), map[bool]string{true: "yes", false: "NO"}[sv.Ready])
		}
	} else {
		if len(s.Services) == 1 && s.Services[0].Name != "" {
			fmt.Fprintf(w, "service:\t%s\n", s.Services[0].Name)
		}
		fmt.Fprintf(w, "master:\t%s\n", masterText(s.Route))
	}
	routing := map[bool]string{true: "yes, this node may route writes", false: "NO: commands are held (no committed master or out of contact with the quorum)"}[s.Ready]
	if len(s.Services) > 1 && !s.Ready {
		routing = "NO: not every service is routed here (commands of those are held)"
	}
	fmt.Fprintf(w, "routing:\t%s\n", routing)
	if s.VIP.Mode != "" && s.VIP.Mode != "none" {
		fmt.Fprintf(w, "vip:\t%s held by %s\n", s.VIP.Address, orNone(s.VIP.Holder))
	}
	for _, sv := range s.Services {
		if sv.VIP != nil {
			fmt.Fprintf(w, "vip of %s:\t%s held by %s\n", sv.Name, sv.VIP.Address, orNone(sv.VIP.Holder))
		}
	}
	w.Flush()
	if !s.Ready {
		return exitNotRouting
	}
	return exitOK
}

func runMembers(o *apiOpts, _ []string, stdout, stderr io.Writer) int {
	var s apiStats
	if err := getStats(o, &s); err != nil {
		return fail(stderr, "members", err)
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tGOSSIP ADDR\tSTATE\tRAFT ROLE\tRAFT ADDR\tLAST CONTACT\tVERSION")
	for _, m := range s.Members {
		contact := "-"
		if m.LastContact > 0 {
			contact = (time.Duration(m.LastContact * float64(time.Second))).Round(time.Millisecond).String() + " ago"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Addr, m.GossipState, orNone(m.RaftRole), m.RaftAddr, contact, m.Version)
	}
	w.Flush()
	return exitOK
}

// runMembersRemove: `redhaven members remove NAME` removes a failed server
// from the Raft configuration (run it against the leader's agent).
func runMembersRemove(o *apiOpts, args []string, stdout, stderr io.Writer) int {
	var out actedResult
	c, err := newAPIClient(o)
	if err == nil {
		err = c.do("POST", "/api/v1/members/remove", map[string]string{"node": args[0]}, &out)
	}
	if err != nil {
		return fail(stderr, "members remove", err)
	}
	printActed(stdout, out)
	return exitOK
}

func runFailover(o *apiOpts, args []string, stdout, stderr io.Writer) int {
	c, err := newAPIClient(o)
	if err != nil {
		return fail(stderr, "failover", err)
	}
	var before apiStats
	if err := c.do("GET", "/api/v1/stats", nil, &before); err != nil {
		return fail(stderr, "failover", err)
	}
	name := ""
	if len(args) > 0 {
		name = args[0]
	}
	old, err := serviceRoute(before, name)
	if err != nil {
		fmt.Fprintf(stderr, "redhaven failover: %v\n", err)
		return exitUsage
	}
	var acted actedResult
	if err := c.do("POST", "/api/v1/failover", map[string]string{"service": name}, &acted); err != nil {
		return fail(stderr, "failover", err)
	}
	printActed(stdout, acted)
	req := ""
	if acted.ID != 0 {
		req = fmt.Sprintf(" (request %d)", acted.ID)
	}
	fmt.Fprintf(stdout, "master now %s (epoch %d); waiting for the new master%s...\n", old.Master, old.Epoch, req)
	deadline := time.Now().Add(60 * time.Second)
	pending := false
	for time.Now().Before(deadline) {
		var s apiStats
		if err := c.do("GET", "/api/v1/stats", nil, &s); err == nil {
			done, msg, err := failoverOutcome(s, name, old, acted.ID)
			if err != nil {
				return fail(stderr, "failover", err)
			}
			if done {
				fmt.Fprintln(stdout, msg)
				return exitOK
			}
			pending = msg != ""
		}
		time.Sleep(200 * time.Millisecond)
	}
	if pending {
		fmt.Fprintf(stderr, "redhaven failover: request %d still pending after 60s; see the agent's log and the stats page\n", acted.ID)
		return exitError
	}
	fmt.Fprintln(stderr, "redhaven failover: no new master after 60s; see the agent's log and the stats page")
	return exitError
}

// failoverOutcome reads one stats answer while `redhaven failover` waits
// for its request id (0 from an agent that does not return it) to end.
// done with a message once the service has a new master (above old's
// epoch); an error naming the leader's reason once the request completed
// as failed (the route alone cannot tell: an abort puts old back, which
// an earlier abort may have done too, and a running failover pauses the
// route); else not done, with msg "pending" while the request still is.
func failoverOutcome(s apiStats, name string, old apiRoute, id uint64) (done bool, msg string, err error) {
	r, err := serviceRoute(s, name)
	if err != nil {
		return false, "", nil // the service went away from this agent's view: keep waiting
	}
	if r.Master != "" && r.Master != old.Master && r.Epoch > old.Epoch {
		return true, fmt.Sprintf("new master %s (epoch %d)", r.Master, r.Epoch), nil
	}
	var p *apiPlanned
	for _, sv := range s.Services {
		if sv.Name == name || name == "" && len(s.Services) == 1 {
			p = sv.PlannedFailover
		}
	}
	if id == 0 || p == nil || p.ID != id {
		return false, "", nil // an older agent, or this request not applied here yet
	}
	if p.Status != "completed" {
		return false, "pending", nil
	}
	why, failed := strings.CutPrefix(p.Result, "failed: ")
	if !failed {
		return true, "failover done: " + p.Result, nil
	}
	now := "writes resumed on " + old.Master + fmt.Sprintf(" (epoch %d)", old.Epoch)
	switch {
	case r.Master == "":
		now = "no master committed now (writes are held until one is; see the agent's log)"
	case r.Master != old.Master || r.Epoch != old.Epoch:
		now = "master now " + masterText(r)
	}
	return false, "", fmt.Errorf("the leader aborted the failover (request %d): %s; %s", id, why, now)
}

// serviceRoute is the committed route of the service called name in s;
// "" names the only service (an error names them all when there are
// several, or when name is not one of them).
func serviceRoute(s apiStats, name string) (apiRoute, error) {
	if len(s.Services) == 0 { // an agent older than issue 14: one service
		return s.Route, nil
	}
	names := make([]string, len(s.Services))
	for i, sv := range s.Services {
		if sv.Name == name || name == "" && len(s.Services) == 1 {
			return sv.Route, nil
		}
		names[i] = strconv.Quote(sv.Name)
	}
	if name == "" {
		return apiRoute{}, fmt.Errorf("the agent routes several services; name one: %s", strings.Join(names, ", "))
	}
	return apiRoute{}, fmt.Errorf("service %q: not routed by %s (services: %s)", name, s.Node, strings.Join(names, ", "))
}

func runJoin(o *apiOpts, args []string, stdout, stderr io.Writer) int {
	return joinLeave(o, "join", map[string]any{"addrs": args}, stdout, stderr)
}

func runLeave(o *apiOpts, _ []string, stdout, stderr io.Writer) int {
	return joinLeave(o, "leave", map[string]any{}, stdout, stderr)
}

func joinLeave(o *apiOpts, action string, body map[string]any, stdout, stderr io.Writer) int {
	var out actedResult
	c, err := newAPIClient(o)
	if err == nil {
		err = c.do("POST", "/api/v1/"+action, body, &out)
	}
	if err != nil {
		return fail(stderr, action, err)
	}
	printActed(stdout, out) // join and leave act on the agent asked
	return exitOK
}

func getStats(o *apiOpts, s *apiStats) error {
	c, err := newAPIClient(o)
	if err != nil {
		return err
	}
	return c.do("GET", "/api/v1/stats", nil, s)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
