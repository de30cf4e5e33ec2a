package webui_test

import (
	"os"
	"testing"
)

// TestPreviewHTML writes the page rendered from the sample snapshot to
// $REDHAVEN_PREVIEW (a file), for looking at the design by hand.
func TestPreviewHTML(t *testing.T) {
	out := os.Getenv("REDHAVEN_PREVIEW")
	if out == "" {
		t.Skip("REDHAVEN_PREVIEW not set")
	}
	src := &testSource{snap: sampleSnapshot()}
	s := newServer(t, authConfig(), src, &testAdmin{})
	rec := do(s.Handler(), "GET", "/?refresh=5", nil, nil, &adminUser)
	if err := os.WriteFile(out, rec.Body.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
