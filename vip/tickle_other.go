//go:build !linux

package vip

func openTickler() (tickleSender, error) { return nil, ErrUnsupported }
