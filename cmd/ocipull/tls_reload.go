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
	mu               sync.Mutex
	cert, key, ca    string
	stamp            string // of the files last loaded
	pair             *tls.Certificate
	pool             *x509.CertPool
	checked          time.Time
	report           func(error)
	minCheckInterval time.Duration
}

// newReloadingTLS loads the files once: an error here is fatal.
func newReloadingTLS(cert, key, ca string, report func(error)) (*reloadingTLS, error) {
	r := &reloadingTLS{cert: cert, key: key, ca: ca, report: report, minCheckInterval: time.Second}
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
	oldCert, oldKey, oldCA, oldStamp := r.cert, r.key, r.ca, r.stamp
	r.cert, r.key, r.ca, r.stamp = cert, key, ca, ""
	if err := r.loadLocked(); err != nil {
		r.cert, r.key, r.ca, r.stamp = oldCert, oldKey, oldCA, oldStamp
		return err
	}
	return nil
}

func (r *reloadingTLS) load() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loadLocked()
}

// stampOf identifies the files' current versions.
func stampOf(files ...string) string {
	s := ""
	for _, f := range files {
		if f == "" {
			continue
		}
		if st, err := os.Stat(f); err == nil {
			s += fmt.Sprintf("%s:%d:%d;", f, st.Size(), st.ModTime().UnixNano())
		} else {
			s += f + ":missing;"
		}
	}
	return s
}

func (r *reloadingTLS) loadLocked() error {
	stamp := stampOf(r.cert, r.key, r.ca)
	if stamp == r.stamp {
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
	r.pair, r.pool, r.stamp = &pair, pool, stamp
	return nil
}

// refresh re-reads the files when they changed, at most once a
// minCheckInterval.
func (r *reloadingTLS) refresh() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) < r.minCheckInterval {
		return
	}
	r.checked = time.Now()
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
