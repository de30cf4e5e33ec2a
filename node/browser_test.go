package node

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
	"github.com/redhaven/redhaven/webui"
)

// TestStatsPageInBrowser opens the stats page of a running agent in front
// of real redis + Sentinel in headless Chromium: the master is shown,
// killing it shows the new master after a refresh, and an admin puts a
// replica into maintenance through the page's form.
func TestStatsPageInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	exe := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			exe = p
			break
		}
	}
	if exe == "" {
		testutil.Require(t, "chromium", "chromium not found (apt-get install chromium)")
	}
	set := redistest.StartSet(t, redistest.SetOptions{DownAfter: time.Second})
	cfg := agentConfig(t, set)
	hash, err := webui.HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	cfg.HTTP.Auth = []webui.User{{Name: "admin", PasswordHash: hash, Role: webui.RoleAdmin}}
	n := startAgent(t, cfg)
	base := "http://" + n.HTTPAddr().String()
	testutil.Eventually(t, 15*time.Second, "agent routes to the master", func() bool {
		return n.services[0].routes.Route().Master == set.Master.Addr
	})

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "profile")), chromedp.WindowSize(1440, 1000))
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	auth := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		v := "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:s3cret"))
		_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": v}})
		return err
	})
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(c, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(expr string) string {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		v, err := chromedp.Run(c, chromedp.Evaluate[string](expr))
		if err != nil {
			return "error: " + err.Error()
		}
		return v
	}
	masterRow := `(document.querySelector('#backends tr.master') || {dataset: {}}).dataset.addr || ''`

	// The first action starts the browser: it must run on the tab's own
	// context (a timeout context would end the browser with it).
	if err := chromedp.Do(ctx, auth); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	run("open page", chromedp.Navigate(base+"/?refresh=1"))
	var seen string
	deadline := time.Now().Add(10 * time.Second)
	for seen = eval(masterRow); seen != set.Master.Addr && time.Now().Before(deadline); seen = eval(masterRow) {
		time.Sleep(100 * time.Millisecond)
	}
	if seen != set.Master.Addr {
		t.Fatalf("page shows master %q, want %s; page text: %.600s", seen, set.Master.Addr, eval(`document.body ? document.body.innerText : ''`))
	}
	if rows := eval(`String(document.querySelectorAll('#backends tbody tr').length)`); rows != "3" {
		t.Errorf("backend rows = %s, want 3", rows)
	}

	set.Master.Kill()
	var newMaster string
	testutil.Eventually(t, 20*time.Second, "page shows a new master after the kill", func() bool {
		newMaster = eval(masterRow)
		return newMaster != "" && newMaster != set.Master.Addr && !strings.HasPrefix(newMaster, "error")
	})
	// redhaven routes about a second before Sentinel announces the switch:
	// wait for Sentinel to agree rather than compare at once.
	testutil.Eventually(t, 15*time.Second, "Sentinel agrees with the page's master "+newMaster, func() bool {
		return set.CurrentMaster() == newMaster
	})
	if cls := eval(`document.querySelector('#backends tr[data-addr="` + set.Master.Addr + `"]').className`); !strings.Contains(cls, "down") {
		t.Errorf("killed master's row class = %q, want down", cls)
	}

	// Admin: put a replica into maintenance; committed through Raft.
	var replica string
	for _, r := range set.Replicas {
		if r.Addr != newMaster {
			replica = r.Addr
		}
	}
	form := `#backends form[data-addr="` + replica + `"]`
	run("submit maintenance", chromedp.Navigate(base+"/?refresh=0"),
		chromedp.SetValue(chromedp.CSS(form+" select"), webui.AdminMaintenance),
		chromedp.Click(chromedp.CSS(form+" button")),
		chromedp.WaitVisible(chromedp.CSS(".flash")))
	if flash := eval(`document.querySelector('.flash').textContent`); !strings.Contains(flash, "maintenance") {
		t.Errorf("flash = %q", flash)
	}
	testutil.Eventually(t, 5*time.Second, "maintenance committed", func() bool {
		return string(n.cluster.State().Service(n.Service()).Admin[replica]) == "maintenance"
	})
	for _, r := range n.services[0].routes.Route().Replicas {
		if r == replica {
			t.Errorf("replica %s in maintenance still receives reads", replica)
		}
	}

	// Summary rows, the process block, the new master's downtime 0 and the
	// killed one's above 0.
	if up := eval(`document.querySelector('#backends-up').textContent`); up != "1 / 3 up" { // the new master; one replica in maintenance, the old master down
		t.Errorf("backends summary row says %q, want 1 / 3 up", up)
	}
	if proc := eval(`document.querySelector('#process').textContent`); !strings.Contains(proc, "pid ") || !strings.Contains(proc, "goroutines") {
		t.Errorf("process block %q", proc)
	}
	// hide DOWN servers: the killed master's row goes, the link brings it back.
	run("hide DOWN servers", chromedp.Click(chromedp.CSS("#hide-down")), chromedp.WaitVisible(chromedp.CSS("#backends")))
	if rows, url := eval(`String(document.querySelectorAll('#backends tbody tr').length)`), eval(`location.search`); rows != "2" || !strings.Contains(url, "hide=down") {
		t.Errorf("with hide=down: %s rows at %s, want 2", rows, url)
	}
	if link := eval(`document.querySelector('#hide-down').textContent`); !strings.Contains(link, "1 hidden") {
		t.Errorf("toggle says %q, want the count hidden", link)
	}
	run("show all", chromedp.Navigate(base+"/?refresh=0"))

	dir := os.Getenv("REDHAVEN_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	_ = os.MkdirAll(dir, 0o755)
	// At 1400 px every table fits without scrolling sideways (the
	// Sentinels' LAST EVENT and WHEN were cut off); at 390 px (a phone)
	// the page itself does not scroll sideways: each table scrolls inside
	// its frame, headers included.
	overflow := `Array.from(document.querySelectorAll('.tw')).filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.querySelector('table').id || e.previousElementSibling.textContent.trim().split(/\s/)[0]).join(',')`
	for _, vp := range []struct {
		width, height int64
		name          string
	}{{1400, 1000, "agent-stats-page.png"}, {390, 844, "agent-stats-page-390.png"}} {
		run(fmt.Sprintf("viewport %d", vp.width), chromedp.EmulateViewport(vp.width, vp.height), chromedp.Navigate(base+"/?refresh=0"),
			chromedp.WaitVisible(chromedp.CSS("#backends")))
		if vp.width == 1400 {
			if cut := eval(overflow); cut != "" {
				t.Errorf("at 1400 px these tables scroll sideways: %s", cut)
			}
		} else if w := eval(`String(document.documentElement.scrollWidth)`); w != "390" {
			t.Errorf("at 390 px the page is %s px wide, want 390 (tables scroll inside their frames)", w)
		}
		c, cancelShot := context.WithTimeout(ctx, 20*time.Second)
		png, err := chromedp.Run(c, chromedp.FullScreenshot(100))
		cancelShot()
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		path := filepath.Join(dir, vp.name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot at %d px: %s", vp.width, path)
	}
}
