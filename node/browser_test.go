package node

import (
	"context"
	"encoding/base64"
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
		return n.routes.Route().Master == set.Master.Addr
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
		return string(n.cluster.State().Admin[replica]) == "maintenance"
	})
	for _, r := range n.routes.Route().Replicas {
		if r == replica {
			t.Errorf("replica %s in maintenance still receives reads", replica)
		}
	}

	dir := os.Getenv("REDHAVEN_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	_ = os.MkdirAll(dir, 0o755)
	c, cancelShot := context.WithTimeout(ctx, 20*time.Second)
	defer cancelShot()
	png, err := chromedp.Run(c, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(dir, "agent-stats-page.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}
