package node

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/redhaven/redhaven/webui"
)

// TestWebAdminService: the admin actions accept the services this node
// routes ("" for the only one) and answer another name with a 404 naming
// the services there are, before reaching the cluster; with several, ""
// is a bad request naming them.
func TestWebAdminService(t *testing.T) {
	n := &Node{cfg: Config{NodeName: "n1"}}
	n.services = []*service{{name: "mymaster", cfg: ServiceConfig{Name: "mymaster"}}}
	a := (*webAdmin)(n)
	for _, name := range []string{"", "mymaster"} {
		if s, err := n.service(name); err != nil || s != n.services[0] {
			t.Errorf("service(%q) = %v, %v; want the service", name, s, err)
		}
	}
	_, err := a.RequestFailover(context.Background(), "cache")
	if !errors.Is(err, webui.ErrNotFound) || !strings.Contains(err.Error(), `service "cache": not configured on n1 (services: "mymaster")`) {
		t.Errorf("RequestFailover(cache) = %v, want a not-found naming mymaster", err)
	}
	_, err = a.SetBackendState(context.Background(), "cache", "10.0.0.1:6379", webui.AdminDrain)
	if !errors.Is(err, webui.ErrNotFound) {
		t.Errorf("SetBackendState(cache, ...) = %v, want not found", err)
	}
	n.services = append(n.services, &service{name: "cache", cfg: ServiceConfig{Name: "cache"}})
	if s, err := n.service("cache"); err != nil || s != n.services[1] {
		t.Errorf("service(cache) = %v, %v; want the second service", s, err)
	}
	_, err = a.RequestFailover(context.Background(), "")
	if !errors.Is(err, webui.ErrBadRequest) || !strings.Contains(err.Error(), `give one of "mymaster", "cache"`) {
		t.Errorf("RequestFailover(\"\") with two services = %v, want a bad request naming both", err)
	}
}
