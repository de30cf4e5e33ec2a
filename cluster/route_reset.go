package cluster

import (
	"context"
	"errors"
	"fmt"
)

// A committed route can be wrong in a way the epoch rule cannot repair: a
// forged or buggy entry at an epoch Sentinel will never reach pins the
// route for good (RouteDecision.Replaces refuses every lower epoch). The
// route reset is the operator's way out: it clears the committed route
// (no master, epoch 0) so that the leader commits Sentinel's master again
// on its next step. It is an FSM command like any other write, so every
// node applies it at the same index.

// opRouteReset is the FSM command that clears the committed route.
const opRouteReset = "route_reset"

// ErrRouteChanged: a route reset named the route it meant to clear, and
// the committed route is another one by now (look again before resetting).
var ErrRouteChanged = errors.New("cluster: the committed route changed since it was read")

// ResetRoute clears the committed route (leader only, else ErrNotLeader).
// When expect is not nil, the reset applies only while the committed route
// still has expect's master and epoch (ErrRouteChanged otherwise), so a
// reset decided on an old view never clears a newer good route. Refused
// with ErrFailoverPending while a planned failover runs (it owns the
// route then). Resetting an empty route is a no-op.
func (a *Agent) ResetRoute(ctx context.Context, service string, expect *RouteDecision, reason string) error {
	service, err := a.serviceName(service)
	if err != nil {
		return err
	}
	if reason == "" {
		reason = "reset by operator"
	}
	var c command
	c.Op, c.Service, c.Reason = opRouteReset, service, reason
	if expect != nil {
		e := RouteDecision{Master: expect.Master, Epoch: expect.Epoch}
		c.Route = &e
	}
	_, err = a.applyCmd(ctx, c)
	return err
}

// applyRouteReset is the FSM side of ResetRoute (f.mu held).
func (f *fsm) applyRouteReset(c command) applyResult {
	name, ss := f.service(c)
	cur := ss.Route
	if e := c.Route; e != nil && (e.Master != cur.Master || e.Epoch != cur.Epoch) {
		return applyResult{err: fmt.Errorf("%w: service %q: expected master %q epoch %d, committed master %q epoch %d",
			ErrRouteChanged, name, e.Master, e.Epoch, cur.Master, cur.Epoch)}
	}
	if p, ok := ss.PendingFailover(); ok {
		return applyResult{err: fmt.Errorf("%w (id %d): it restores or replaces the route itself", ErrFailoverPending, p.ID)}
	}
	if cur == (RouteDecision{}) || (cur.Master == "" && cur.Epoch == 0) {
		return applyResult{}
	}
	ss.Route = RouteDecision{Reason: "reset: " + c.Reason, Time: c.Time, DecidedBy: c.Node}
	f.st.Services[name] = ss
	f.addEvent(Event{Time: c.Time, Kind: EventRouteChange, Node: c.Node, Service: name,
		Message: fmt.Sprintf("route reset (was master %s epoch %d): %s", cur.Master, cur.Epoch, c.Reason)})
	return applyResult{changed: true}
}
