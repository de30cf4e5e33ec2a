package node

import (
	"context"
	"errors"
	"time"
)

// redis.tls's files (the CA pool and client certificate of every
// connection to Redis and Sentinel) are read again on SIGHUP (ReloadTLS)
// and when their size or mtime changes (redisTLSLoop), as proxy.tls's
// are: new connections use the new files, connections already made keep
// going, and a file that fails to load leaves the ones in use.

// redisTLSPollEvery is how often redis.tls's files are checked for a
// change (proxy.tls's period).
const redisTLSPollEvery = 5 * time.Second

// ReloadTLS reads the TLS files again (SIGHUP): proxy.tls's (the proxy
// logs the outcome) and redis.tls's (logged here). An error keeps the
// files in use and names the one that failed.
func (n *Node) ReloadTLS() error {
	var errs []error
	for _, s := range n.services {
		errs = append(errs, s.proxy.ReloadTLS())
		if s.redisTLS == nil {
			continue
		}
		if err := s.redisTLS.Reload(); err != nil {
			s.logger.Error("redis TLS files reload failed; keeping the ones in use", "err", err)
			errs = append(errs, err)
			continue
		}
		s.logger.Info("redis TLS files reloaded", "ca_file", s.cfg.Redis.TLS.CAFile, "cert_file", s.cfg.Redis.TLS.CertFile)
	}
	return errors.Join(errs...)
}

// redisTLSLoop reloads redis.tls's files when they change (polled, as
// proxy.tls's: no file-watching dependency, and a file replaced by a
// rename is seen too).
func (n *Node) redisTLSLoop(ctx context.Context) error {
	t := time.NewTicker(redisTLSPollEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for _, s := range n.services {
			if s.redisTLS == nil {
				continue
			}
			changed, err := s.redisTLS.ReloadIfChanged()
			switch {
			case err != nil:
				s.logger.Error("redis TLS files changed but could not be loaded; keeping the ones in use", "err", err)
			case changed:
				s.logger.Info("redis TLS files changed; reloaded", "ca_file", s.cfg.Redis.TLS.CAFile, "cert_file", s.cfg.Redis.TLS.CertFile)
			}
		}
	}
}
