//go:build !linux

package proxy

import "errors"

// idlePoller is Linux only (epoll); elsewhere sessions are never parked.
type idlePoller struct{}

func newIdlePoller() (*idlePoller, error) { return nil, errors.New("idle poller: Linux only") }

func (p *idlePoller) park(*session) bool   { return false }
func (p *idlePoller) unpark(*session) bool { return false }
func (p *idlePoller) close()               {}
