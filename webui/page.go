package webui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

//go:embed assets/style.css assets/page.html
var assets embed.FS

var (
	styleCSS  = mustRead("assets/style.css")
	styleHash = func() string { h := sha256.Sum256(styleCSS); return hex.EncodeToString(h[:6]) }()
	pageTmpl  = template.Must(template.New("page.html").Funcs(funcs).Parse(string(mustRead("assets/page.html"))))
)

func mustRead(name string) []byte {
	b, err := assets.ReadFile(name)
	if err != nil {
		panic(err) // embedded at build time: cannot happen
	}
	return b
}

// refreshChoices are the intervals offered on the page, in seconds.
var refreshChoices = []int{2, 5, 10, 30, 60}

// maxEvents bounds the events shown on the page (the API shows all).
const maxEvents = 100

type pageData struct {
	Snap        Snapshot
	Now         time.Time
	Uptime      time.Duration
	Refresh     int // seconds; 0: paused
	Refreshes   []int
	AuthEnabled bool
	User        User
	LoggedIn    bool
	CanAct      bool
	CSRF        string
	Flash       *flash
	Events      []Event
	LeaderName  string
	Alive       int
	CSS         string
	AdminStates []string
	Scheme      string
	// HideDown (?hide=down) leaves DOWN backends out of the tables; Keep
	// is the query to carry on the page's links ("&hide=down" or "").
	HideDown bool
	Keep     template.URL
	Proc     Process
	// Services: a section each; Several when there is more than one.
	Services      []servicePage
	Several       bool
	Redis         int // backends of every service
	SentinelCount int // distinct Sentinel addresses
	Sentinels     []sentinelRow
}

// servicePage is one service's section of the page.
type servicePage struct {
	Svc Service
	// ID is appended to the ids of the section's elements: "" for the
	// first service (ids as with one service: backends, route-master,
	// ...), "-2", "-3"... for the next.
	ID       string
	Hidden   int       // backends left out (hide=down)
	Backends []Backend // the backends shown
	// Totals: the tables' total rows.
	FrontTotal Frontend
	BackTotal  Backend
	BackUp     int // backends up
}

// sentinelRow is a Sentinel as it reports one service's master.
type sentinelRow struct {
	Sentinel
	Service   string
	Committed string // the service's committed master
}

func (s *Server) handlePage(w http.ResponseWriter, r *http.Request) {
	snap := s.snapshot()
	d := pageData{
		Snap:        snap,
		Now:         snap.Time,
		Refresh:     s.refresh(r),
		Refreshes:   refreshChoices,
		AuthEnabled: s.authEnabled(),
		Flash:       takeFlash(w, r),
		CSS:         "/assets/style.css?v=" + styleHash,
		AdminStates: []string{AdminReady, AdminDrain, AdminMaintenance},
		Scheme:      "http",
	}
	if s.tls != nil {
		d.Scheme = "https"
	}
	if !snap.Started.IsZero() {
		d.Uptime = snap.Time.Sub(snap.Started)
	}
	if r.URL.Query().Get("hide") == "down" {
		d.HideDown, d.Keep = true, "&hide=down"
	}
	d.Proc = snap.Process
	d.Several = len(snap.Services) > 1
	sentinels := map[string]bool{}
	for i, sv := range snap.Services {
		sp := servicePage{Svc: sv, FrontTotal: sumFrontends(sv.Frontends), Backends: sv.Backends[:0:0]}
		if i > 0 {
			sp.ID = "-" + strconv.Itoa(i+1)
		}
		for _, b := range sv.Backends {
			t := &sp.BackTotal
			t.Sessions += b.Sessions
			t.Commands += b.Commands
			t.Errors += b.Errors
			t.Downtime += b.Downtime
			if b.State == StateUp {
				sp.BackUp++
			}
			if d.HideDown && b.State == StateDown {
				sp.Hidden++
				continue
			}
			sp.Backends = append(sp.Backends, b)
		}
		d.Redis += len(sv.Backends)
		for _, sn := range sv.Sentinels {
			sentinels[sn.Addr] = true
			d.Sentinels = append(d.Sentinels, sentinelRow{Sentinel: sn, Service: sv.Name, Committed: sv.Route.Master})
		}
		d.Services = append(d.Services, sp)
	}
	d.SentinelCount = len(sentinels)
	d.User, d.LoggedIn = userFrom(r.Context())
	if s.canAct(d.User, d.LoggedIn) {
		d.CanAct = true
		d.CSRF = s.csrfToken(d.User.Name)
	}
	d.Events = slices.Clone(snap.Events)
	slices.SortStableFunc(d.Events, func(a, b Event) int { return b.Time.Compare(a.Time) })
	if len(d.Events) > maxEvents {
		d.Events = d.Events[:maxEvents]
	}
	for _, m := range snap.Members {
		if m.IsLeader {
			d.LeaderName = m.Name
		}
		if m.GossipState == "alive" {
			d.Alive++
		}
	}
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, d); err != nil {
		s.logger.Warn("render stats page", "err", err)
		http.Error(w, "500 internal server error: render page", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	_, _ = w.Write(buf.Bytes())
}

// refresh returns the auto-refresh interval in seconds: ?refresh=N
// (0 pauses), else the configured default.
func (s *Server) refresh(r *http.Request) int {
	if v := r.URL.Query().Get("refresh"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			return min(n, 3600)
		}
	}
	return int(s.cfg.DefaultRefresh.Round(time.Second) / time.Second)
}

func (s *Server) handleCSS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "private, max-age=86400")
	_, _ = w.Write(styleCSS)
}

var funcs = template.FuncMap{
	"ago":      ago,
	"dur":      human,
	"ms":       func(d time.Duration) string { return fmtFloat(float64(d)/float64(time.Millisecond)) + " ms" },
	"num":      num,
	"bytes":    humanBytes,
	"rate":     func(f float64) string { return fmtFloat(f) },
	"stclass":  stateClass,
	"svclass":  serviceClass,
	"pct":      pct,
	"clock":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"evtime":   evTime,
	"iso":      func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"zero":     func(t time.Time) bool { return t.IsZero() },
	"contains": strings.Contains,
	"short":    shortErr,
	"fixed1":   func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
}

// evTime shows an event's time of day, with the date when it is older
// than 20 hours.
func evTime(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	if now.Sub(t) > 20*time.Hour {
		return t.UTC().Format("Jan 02 15:04")
	}
	return t.UTC().Format("15:04:05")
}

// ago is "3m12s" since t at now; "-" for a zero time.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	return human(d)
}

// human writes a duration the way HAProxy's page does: 2 units at most.
func human(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}

// num groups digits by thousands: 1234567 -> "1,234,567".
func num(v any) string {
	var s string
	switch n := v.(type) {
	case int:
		s = strconv.Itoa(n)
	case int64:
		s = strconv.FormatInt(n, 10)
	case uint64:
		s = strconv.FormatUint(n, 10)
	default:
		return fmt.Sprint(v)
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func humanBytes(v any) string {
	var n float64
	switch x := v.(type) {
	case int64:
		n = float64(x)
	case uint64:
		n = float64(x)
	case int:
		n = float64(x)
	}
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	i := 0
	for math.Abs(n) >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", int64(n))
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}

func fmtFloat(f float64) string {
	switch {
	case f == 0:
		return "0"
	case f < 10:
		return strconv.FormatFloat(f, 'f', 1, 64)
	default:
		return num(int64(math.Round(f)))
	}
}

func pct(cur, limit int64) int {
	if limit <= 0 {
		return 0
	}
	return int(min(100, max(0, cur*100/limit)))
}

// stateClass maps a backend state to its CSS class.
func stateClass(state string) string {
	switch state {
	case StateUp:
		return "up"
	case StateDown:
		return "down"
	case StateGoingUp:
		return "goingup"
	case StateGoingDown:
		return "goingdown"
	case StateMaint, AdminMaintenance:
		return "maint"
	case StateDrain:
		return "drain"
	default:
		return "unknown"
	}
}

// serviceClass maps a service state (ServiceSummary.State) to its CSS
// class.
func serviceClass(state string) string {
	switch state {
	case ServiceReady:
		return "up"
	case ServiceContradicted:
		return "goingdown"
	}
	return "down"
}

func shortErr(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}
