package registry_test

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/ocipull/registry"
)

// blackhole is a loopback address whose connection attempts hang, as a
// mirror behind a firewall that drops packets: a listener with an accept
// queue of one, filled, so the kernel drops every further SYN.
func blackhole(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Skipf("socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for i := 0; i < 8; i++ {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr // the queue is full: this attempt hung
		}
		t.Cleanup(func() { conn.Close() })
	}
	t.Skip("could not fill the listener's accept queue: connection attempts do not hang here")
	return ""
}

// A mirror whose connection attempts hang falls through after its
// DialTimeout, well within a deadline the default 30 s would miss.
func TestMirrorDialTimeoutFallsThrough(t *testing.T) {
	ms := newMirrorSetup(t, nil)
	c := ms.client(registry.Endpoint{Scheme: "http", Host: blackhole(t), DialTimeout: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ref, err := c.Read(ctx, "v1")
	if err != nil {
		t.Fatalf("got %v, want the registry's manifest after the mirror's dial timed out", err)
	}
	if ref.Descriptor().Digest != ms.img.Digest() {
		t.Errorf("digest %s, want %s", ref.Descriptor().Digest, ms.img.Digest())
	}
	if n := ms.regSeen.count("/manifests/v1"); n != 1 {
		t.Errorf("registry saw %d manifest requests, want 1", n)
	}
}
