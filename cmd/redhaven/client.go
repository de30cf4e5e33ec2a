package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
)

// The CLI's view of GET /api/v1/stats: only the fields it prints.
type apiStats struct {
	Node    string `json:"node"`
	Version string `json:"redhaven_version"`
	Ready   bool   `json:"ready"`
	Leader  bool   `json:"leader"`
	Route   struct {
		Master string `json:"master"`
		Epoch  int64  `json:"epoch"`
		Reason string `json:"reason"`
	} `json:"route"`
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
	VIP struct {
		Mode    string `json:"mode"`
		Address string `json:"address"`
		Holder  string `json:"holder"`
	} `json:"vip"`
}

// apiClient talks to the local agent's HTTP API.
type apiClient struct {
	base       string
	user, pass string
	http       *http.Client
}

func apiFlags(name string, stderr io.Writer) (*pflag.FlagSet, *string, *string) {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("http", "127.0.0.1:8404", "the agent's HTTP address (http.listen)")
	user := fs.String("user", os.Getenv("REDHAVEN_HTTP_USER"), "user for http.auth (or REDHAVEN_HTTP_USER; password from REDHAVEN_HTTP_PASSWORD)")
	return fs, addr, user
}

func newAPIClient(addr, user string) *apiClient {
	base := addr
	if !strings.Contains(base, "://") {
		if strings.HasPrefix(base, ":") {
			base = "127.0.0.1" + base
		}
		base = "http://" + base
	}
	return &apiClient{base: strings.TrimRight(base, "/"), user: user, pass: os.Getenv("REDHAVEN_HTTP_PASSWORD"), http: &http.Client{Timeout: 30 * time.Second}}
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
		if errors.As(err, &op) {
			return fmt.Errorf("cannot reach the agent at %s (is it running? see --http): %w", c.base, err)
		}
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: bad JSON: %w", method, path, err)
		}
	}
	return nil
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs, addr, user := apiFlags("status", stderr)
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	var s apiStats
	if err := newAPIClient(*addr, *user).do("GET", "/api/v1/stats", nil, &s); err != nil {
		fmt.Fprintf(stderr, "redhaven status: %v\n", err)
		return 1
	}
	leader := ""
	for _, m := range s.Members {
		if m.IsLeader {
			leader = m.Name
		}
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "node:\t%s (redhaven %s)\n", s.Node, s.Version)
	fmt.Fprintf(w, "leader:\t%s\n", orNone(leader))
	fmt.Fprintf(w, "master:\t%s (epoch %d, %s)\n", orNone(s.Route.Master), s.Route.Epoch, s.Route.Reason)
	fmt.Fprintf(w, "routing:\t%s\n", map[bool]string{true: "yes, this node may route writes", false: "NO: commands are held (no committed master or out of contact with the quorum)"}[s.Ready])
	if s.VIP.Mode != "" && s.VIP.Mode != "none" {
		fmt.Fprintf(w, "vip:\t%s held by %s\n", s.VIP.Address, orNone(s.VIP.Holder))
	}
	w.Flush()
	if !s.Ready {
		return 3
	}
	return 0
}

func runMembers(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "remove" {
		return runMembersRemove(args[1:], stdout, stderr)
	}
	fs, addr, user := apiFlags("members", stderr)
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	var s apiStats
	if err := newAPIClient(*addr, *user).do("GET", "/api/v1/stats", nil, &s); err != nil {
		fmt.Fprintf(stderr, "redhaven members: %v\n", err)
		return 1
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tGOSSIP ADDR\tSTATE\tRAFT ROLE\tRAFT ADDR\tLAST CONTACT\tVERSION")
	for _, m := range s.Members {
		contact := "-"
		if m.LastContact > 0 {
			contact = (time.Duration(m.LastContact * float64(time.Second))).Round(time.Millisecond).String()
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Addr, m.GossipState, orNone(m.RaftRole), m.RaftAddr, contact, m.Version)
	}
	w.Flush()
	return 0
}

// runMembersRemove: `redhaven members remove NAME` removes a failed server
// from the Raft configuration (run it against the leader's agent).
func runMembersRemove(args []string, stdout, stderr io.Writer) int {
	fs, addr, user := apiFlags("members remove", stderr)
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "redhaven members remove: give exactly one member name (see `redhaven members`)")
		return 2
	}
	var out struct {
		Message string `json:"message"`
	}
	if err := newAPIClient(*addr, *user).do("POST", "/api/v1/members/remove", map[string]string{"node": fs.Arg(0)}, &out); err != nil {
		fmt.Fprintf(stderr, "redhaven members remove: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, out.Message)
	return 0
}

func runFailover(args []string, stdout, stderr io.Writer) int {
	fs, addr, user := apiFlags("failover", stderr)
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	c := newAPIClient(*addr, *user)
	var before apiStats
	if err := c.do("GET", "/api/v1/stats", nil, &before); err != nil {
		fmt.Fprintf(stderr, "redhaven failover: %v\n", err)
		return 1
	}
	if err := c.do("POST", "/api/v1/failover", map[string]string{}, nil); err != nil {
		fmt.Fprintf(stderr, "redhaven failover: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "planned failover requested (master now %s, epoch %d); waiting for the new master...\n", before.Route.Master, before.Route.Epoch)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var s apiStats
		if err := c.do("GET", "/api/v1/stats", nil, &s); err == nil && s.Route.Master != "" && s.Route.Master != before.Route.Master && s.Route.Epoch > before.Route.Epoch {
			fmt.Fprintf(stdout, "new master %s (epoch %d)\n", s.Route.Master, s.Route.Epoch)
			return 0
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Fprintln(stderr, "redhaven failover: no new master after 60s; see the agent's log and the stats page")
	return 1
}

func runJoinLeave(action string) func(args []string, stdout, stderr io.Writer) int {
	return func(args []string, stdout, stderr io.Writer) int {
		fs, addr, user := apiFlags(action, stderr)
		if err := fs.Parse(args); err != nil {
			return usageErr(err)
		}
		body := map[string]any{}
		if action == "join" {
			if fs.NArg() == 0 {
				fmt.Fprintln(stderr, "redhaven join: give at least one gossip address of a running agent (host:port)")
				return 2
			}
			body["addrs"] = fs.Args()
		}
		var out map[string]any
		if err := newAPIClient(*addr, *user).do("POST", "/api/v1/"+action, body, &out); err != nil {
			fmt.Fprintf(stderr, "redhaven %s: %v\n", action, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: ok %v\n", action, out)
		return 0
	}
}

func usageErr(err error) int {
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	return 2
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
