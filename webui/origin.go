package webui

import (
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// Host and Origin checks for actions over TCP. A browser on the node, or
// one that a DNS-rebinding page points at the node, sends the attacker's
// name in Host and Origin; a request that names a host this agent does not
// serve under is refused before its credentials are even looked at.

// hostAllowed tells whether hostport (a Host header, or the host of an
// Origin with its port made explicit) names this server. defPort is the
// port implied when hostport has none (80 or 443).
func (s *Server) hostAllowed(hostport, defPort string) bool {
	hostport = strings.ToLower(strings.TrimSpace(hostport))
	if hostport == "" {
		return false
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = strings.Trim(hostport, "[]"), defPort
	}
	host = strings.TrimSuffix(host, ".")
	for _, a := range s.cfg.AllowedHosts {
		a = strings.ToLower(a)
		if ah, ap, err := net.SplitHostPort(a); err == nil {
			if ah == host && ap == port {
				return true
			}
		} else if strings.Trim(a, "[]") == host {
			return true
		}
	}
	if port != s.listenPort() {
		return false
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsLoopback() {
			return true
		}
		return s.isOwnIP(ip)
	}
	if name, err := os.Hostname(); err == nil {
		name = strings.ToLower(name)
		short, _, _ := strings.Cut(name, ".")
		if host == name || host == short {
			return true
		}
	}
	return false
}

// listenPort is the port the TCP listener is bound to.
func (s *Server) listenPort() string {
	if a, ok := s.ln.Addr().(*net.TCPAddr); ok {
		return strconv.Itoa(a.Port)
	}
	_, p, _ := net.SplitHostPort(s.ln.Addr().String())
	return p
}

// isOwnIP tells whether ip is the listen address or one of the node's
// interface addresses (the VIP included while this node holds it). Read on
// each call: actions are rare and addresses move.
func (s *Server) isOwnIP(ip net.IP) bool {
	if a, ok := s.ln.Addr().(*net.TCPAddr); ok && a.IP.Equal(ip) {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// checkOrigin refuses (403) a request over TCP whose Host, or Origin when
// present, is not a name of this server. It answers the request itself
// and returns false when the request must not go on.
func (s *Server) checkOrigin(w http.ResponseWriter, r *http.Request, asJSON bool) bool {
	defPort := "80"
	if s.tls != nil {
		defPort = "443"
	}
	if !s.hostAllowed(r.Host, defPort) {
		s.logger.Debug("request for a foreign host refused", "host", r.Host, "path", r.URL.Path, "remote", r.RemoteAddr)
		replyError(w, asJSON, http.StatusForbidden, "Host "+strconv.Quote(r.Host)+" is not a name of this agent (add it to http.allowed_hosts)")
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	ok := err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
	if ok {
		p := u.Port()
		if p == "" {
			p = map[string]string{"http": "80", "https": "443"}[u.Scheme]
		}
		ok = s.hostAllowed(net.JoinHostPort(u.Hostname(), p), p)
	}
	if !ok {
		s.logger.Debug("request from a foreign origin refused", "origin", origin, "path", r.URL.Path, "remote", r.RemoteAddr)
		replyError(w, asJSON, http.StatusForbidden, "Origin "+strconv.Quote(origin)+" is not a name of this agent (add it to http.allowed_hosts)")
		return false
	}
	return true
}
