package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// reloadingTLS serves a certificate and, optionally, requires client
// certificates signed by a CA bundle, re-reading the files when they
// change (a renewed certificate is picked up by the next handshake, with
// no restart and no connection dropped); a file that fails to load keeps
// what was loaded before, and the failure is reported.
type reloadingTLS struct {
	mu            sync.Mutex
	cert, key, ca string
	watch         fileWatch // of the files last loaded
	pair          *tls.Certificate
	pool          *x509.CertPool
	report        func(error)
}

// newReloadingTLS loads the files once: an error here is fatal.
func newReloadingTLS(cert, key, ca string, report func(error)) (*reloadingTLS, error) {
	r := &reloadingTLS{cert: cert, key: key, ca: ca, report: report, watch: fileWatch{interval: time.Second}}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

// setFiles points the reloader at other files (a reloaded
// configuration) and loads them; on error the running ones stay.
func (r *reloadingTLS) setFiles(cert, key, ca string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	oldCert, oldKey, oldCA, oldStamp := r.cert, r.key, r.ca, r.watch.loaded
	r.cert, r.key, r.ca, r.watch.loaded = cert, key, ca, ""
	if err := r.loadLocked(); err != nil {
		r.cert, r.key, r.ca, r.watch.loaded = oldCert, oldKey, oldCA, oldStamp
		return err
	}
	return nil
}

func (r *reloadingTLS) load() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loadLocked()
}

func (r *reloadingTLS) loadLocked() error {
	stamp, changed := r.watch.changed(r.cert, r.key, r.ca)
	if !changed {
		return nil
	}
	pair, err := tls.LoadX509KeyPair(r.cert, r.key)
	if err != nil {
		return fmt.Errorf("TLS certificate: %w", err)
	}
	var pool *x509.CertPool
	if r.ca != "" {
		pem, err := os.ReadFile(r.ca)
		if err != nil {
			return fmt.Errorf("client CA: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return errors.New("client CA: no PEM certificate in " + safe(r.ca))
		}
	}
	r.pair, r.pool, r.watch.loaded = &pair, pool, stamp
	return nil
}

// refresh re-reads the files when they changed, looking at most once a
// second.
func (r *reloadingTLS) refresh() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.watch.due() {
		return
	}
	if err := r.loadLocked(); err != nil && r.report != nil {
		r.report(err)
	}
}

// config is the listener's TLS configuration: each handshake takes the
// current certificate and client CA. HTTP/2 is offered, HTTP/1.1 kept.
func (r *reloadingTLS) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			r.refresh()
			r.mu.Lock()
			defer r.mu.Unlock()
			c := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"},
				Certificates: []tls.Certificate{*r.pair}}
			if r.pool != nil {
				c.ClientCAs, c.ClientAuth = r.pool, tls.RequireAndVerifyClientCert
			}
			return c, nil
		},
	}
}
