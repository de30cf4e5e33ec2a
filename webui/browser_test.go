package webui_test

import (
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/redhaven/redhaven/e2e/testutil"
	"github.com/redhaven/redhaven/webui"
)

// chromiumPath finds Debian's chromium.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testutil.Require(t, "chromium", "chromium not found (apt-get install chromium)")
	return ""
}

// artifactDir is $REDHAVEN_ARTIFACTS (CI keeps it) or a temporary directory.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("REDHAVEN_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifacts dir: %v", err)
	}
	return dir
}

// startBrowser starts a headless chromium with a fresh profile; it stops
// when the test ends.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	exe := chromiumPath(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "profile")),
		chromedp.WindowSize(1440, 1000),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancel()
		cancelAlloc() // waits for the browser process to exit
	})
	// The first Run starts the browser; keep it without a timeout.
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{})
		return err
	})); err != nil {
		t.Fatalf("start chromium %s: %v", exe, err)
	}
	return ctx
}

// basicAuth makes every request of the tab carry u's credentials, as a
// browser does after the login prompt.
func basicAuth(u user) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		v := "Basic " + base64.StdEncoding.EncodeToString([]byte(u.name+":"+u.pw))
		_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": v}})
		return err
	})
}

// eval evaluates a JavaScript expression with a bound on the time.
func eval[T any](ctx context.Context, expr string) (T, error) {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return chromedp.Run(c, chromedp.Evaluate[T](expr))
}

func do2(ctx context.Context, d time.Duration, steps ...chromedp.Action[chromedp.Void]) error {
	c, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return chromedp.Do(c, steps...)
}

func saveScreenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(c, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatalf("write screenshot: %v", err)
	}
	t.Logf("screenshot: %s", p)
}

// TestBrowser drives the page in a real headless Chromium: the committed
// master is highlighted, auto refresh shows a new master, and an admin puts
// a backend into maintenance through the form.
func TestBrowser(t *testing.T) {
	src := &testSource{snap: sampleSnapshot()}
	src.update(func(s *webui.Snapshot) { s.Time = time.Time{} }) // live clock
	admin := &testAdmin{src: src}
	srv := newServer(t, authConfig(), src, admin)
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	base := "http://" + srv.Addr().String()
	ctx := startBrowser(t)
	arts := artifactDir(t)

	if err := do2(ctx, 20*time.Second, basicAuth(readerUser), chromedp.Navigate(base+"/?refresh=1")); err != nil {
		t.Fatalf("open page: %v", err)
	}
	masterRow := `(document.querySelector('#backends tr.master') || {dataset: {}}).dataset.addr || ''`
	got, err := eval[string](ctx, masterRow)
	if err != nil || got != addrA {
		t.Fatalf("master row = %q, %v; want %s", got, err, addrA)
	}
	// The stylesheet is served and allowed by the CSP.
	bg, err := eval[string](ctx, `getComputedStyle(document.querySelector('header.top')).backgroundColor`)
	if err != nil || bg != "rgb(43, 49, 64)" {
		t.Errorf("header background = %q, %v: stylesheet not applied", bg, err)
	}
	// A reader gets no forms.
	if n, err := eval[int](ctx, `document.querySelectorAll('form').length`); err != nil || n != 0 {
		t.Errorf("reader sees %d forms (%v), want 0", n, err)
	}

	// Failover: B becomes master, C stays down; the page refreshes itself.
	src.setMaster(addrB, 8)
	testutil.Eventually(t, 20*time.Second, "page shows new master "+addrB, func() bool {
		got, err := eval[string](ctx, masterRow)
		return err == nil && got == addrB
	})
	if v, err := eval[string](ctx, `document.getElementById('route-master').textContent`); err != nil || v != addrB {
		t.Errorf("master card = %q, %v; want %s", v, err, addrB)
	}

	// Admin: pause refresh, put A into maintenance with the form.
	if err := do2(ctx, 20*time.Second, basicAuth(adminUser), chromedp.Navigate(base+"/?refresh=0")); err != nil {
		t.Fatalf("open page as admin: %v", err)
	}
	form := `#backends form[data-addr="` + addrA + `"]`
	if err := do2(ctx, 20*time.Second,
		chromedp.SetValue(chromedp.CSS(form+" select"), webui.AdminMaintenance),
		chromedp.Click(chromedp.CSS(form+" button")),
		chromedp.WaitVisible(chromedp.CSS(".flash")),
	); err != nil {
		t.Fatalf("submit maintenance form: %v", err)
	}
	flash, err := eval[string](ctx, `document.querySelector('.flash').textContent`)
	if err != nil || !strings.Contains(flash, "backend "+addrA+" set to maintenance") {
		t.Errorf("flash = %q, %v", flash, err)
	}
	if cls, _ := eval[string](ctx, `document.querySelector('.flash').className`); !strings.Contains(cls, "ok") {
		t.Errorf("flash class = %q, want ok", cls)
	}
	if calls := admin.Calls(); !slices.Contains(calls, "backend "+addrA+" maintenance") {
		t.Errorf("admin calls = %q", calls)
	}
	if cls, err := eval[string](ctx, `document.querySelector('#backends tr[data-addr="`+addrA+`"]').className`); err != nil || !strings.Contains(cls, "maint") {
		t.Errorf("row of %s class = %q, %v; want maint", addrA, cls, err)
	}
	if loc, err := eval[string](ctx, `location.search`); err != nil || loc != "?refresh=0" {
		t.Errorf("after the action the page is at %q (%v), want ?refresh=0 kept", loc, err)
	}
	saveScreenshot(t, ctx, arts, "webui-stats.png")

	// Phone width: the page must not overflow sideways (tables scroll in
	// their own boxes).
	if err := do2(ctx, 20*time.Second, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile), chromedp.Reload()); err != nil {
		t.Fatalf("phone viewport: %v", err)
	}
	if w, err := eval[int](ctx, `document.documentElement.scrollWidth`); err != nil || w > 400 {
		t.Errorf("page scroll width on a phone = %d (%v), want <= 400", w, err)
	}
	saveScreenshot(t, ctx, arts, "webui-stats-phone.png")
}

// TestBrowserServices: with two services the page shows a section each,
// and an admin puts the second service's replica into maintenance
// through its own form (the action names that service).
func TestBrowserServices(t *testing.T) {
	src := &testSource{snap: twoServices()}
	src.update(func(s *webui.Snapshot) { s.Time = time.Time{} })
	admin := &testAdmin{src: src}
	srv := newServer(t, authConfig(), src, admin)
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	base := "http://" + srv.Addr().String()
	ctx := startBrowser(t)
	arts := artifactDir(t)

	if err := do2(ctx, 20*time.Second, basicAuth(adminUser), chromedp.Navigate(base+"/?refresh=0")); err != nil {
		t.Fatalf("open page: %v", err)
	}
	sections, err := eval[[]string](ctx, `[...document.querySelectorAll('section.service')].map(s => s.dataset.service)`)
	if err != nil || !slices.Equal(sections, []string{"mymaster", "cache"}) {
		t.Fatalf("service sections = %q, %v; want mymaster, cache", sections, err)
	}
	for id, want := range map[string]string{"backends": addrA, "backends-2": cacheA} {
		got, err := eval[string](ctx, `(document.querySelector('#`+id+` tr.master') || {dataset: {}}).dataset.addr || ''`)
		if err != nil || got != want {
			t.Errorf("#%s master row = %q, %v; want %s", id, got, err, want)
		}
	}
	summary, err := eval[string](ctx, `document.querySelector('#summary-2 tbody tr').textContent`)
	if err != nil || !strings.Contains(summary, "cache") || !strings.Contains(summary, cacheA) || !strings.Contains(summary, "ready") {
		t.Errorf("cache summary row = %q, %v", summary, err)
	}

	form := `#backends-2 form[data-addr="` + cacheB + `"]`
	if err := do2(ctx, 20*time.Second,
		chromedp.SetValue(chromedp.CSS(form+" select"), webui.AdminMaintenance),
		chromedp.Click(chromedp.CSS(form+" button")),
		chromedp.WaitVisible(chromedp.CSS(".flash")),
	); err != nil {
		t.Fatalf("submit maintenance form: %v", err)
	}
	flash, err := eval[string](ctx, `document.querySelector('.flash').textContent`)
	if err != nil || !strings.Contains(flash, "service cache: backend "+cacheB+" set to maintenance") {
		t.Errorf("flash = %q, %v", flash, err)
	}
	if calls := admin.Calls(); !slices.Equal(calls, []string{"backend cache/" + cacheB + " maintenance"}) {
		t.Errorf("admin calls = %q", calls)
	}
	if cls, err := eval[string](ctx, `document.querySelector('#backends-2 tr[data-addr="`+cacheB+`"]').className`); err != nil || !strings.Contains(cls, "maint") {
		t.Errorf("row of %s class = %q, %v; want maint", cacheB, cls, err)
	}
	saveScreenshot(t, ctx, arts, "webui-stats-services.png")
}
