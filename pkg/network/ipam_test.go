package network

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"
)

func TestIPAMAllocate(t *testing.T) {
	tests := []struct {
		name   string
		subnet string
		pods   int
		want   []string // addresses in order; "" = exhausted
	}{
		{name: "skips network, gateway, broadcast", subnet: "10.0.0.0/29", pods: 6,
			want: []string{"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", ""}},
		{name: "slash 30 has one address", subnet: "10.0.0.0/30", pods: 2, want: []string{"10.0.0.2", ""}},
		{name: "ipv6", subnet: "fd00::/120", pods: 2, want: []string{"fd00::2", "fd00::3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := ipam{dir: t.TempDir()}
			p := netip.MustParsePrefix(tt.subnet)
			var got []string
			for i := range tt.pods {
				ip, err := a.allocate(string(rune('a'+i)), p, p.Addr().Next())
				if errors.Is(err, errdefs.ErrResourceExhausted) {
					got = append(got, "")
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, ip.String())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("allocations (-want +got):\n%s", diff)
			}
		})
	}
}

// Released addresses are reused only after the others (rotation), a lease
// file left empty by a crash is never handed out again, and reclaim frees
// exactly the leases of dead pods.
func TestIPAMReleaseRotateReclaim(t *testing.T) {
	a := ipam{dir: t.TempDir()}
	p := netip.MustParsePrefix("10.0.0.0/29")
	gw := p.Addr().Next()
	alloc := func(pod string) string {
		t.Helper()
		ip, err := a.allocate(pod, p, gw)
		if err != nil {
			t.Fatal(err)
		}
		return ip.String()
	}
	if got := alloc("a"); got != "10.0.0.2" {
		t.Fatalf("first = %s", got)
	}
	// A crash between create and write leaves an empty lease file.
	if err := os.WriteFile(filepath.Join(a.dir, "10.0.0.3"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := alloc("b"); got != "10.0.0.4" {
		t.Fatalf("second = %s, want 10.0.0.4 (10.0.0.3 is held by a crashed lease)", got)
	}
	if err := a.release("a", nil); err != nil {
		t.Fatal(err)
	}
	if got := alloc("c"); got != "10.0.0.5" {
		t.Fatalf("after release = %s, want rotation to 10.0.0.5", got)
	}
	if err := a.reclaim(map[string]bool{"c": true}); err != nil {
		t.Fatal(err)
	}
	leases, err := a.leases()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[netip.Addr]string{netip.MustParseAddr("10.0.0.5"): "c"}, leases); diff != "" {
		t.Errorf("leases after reclaim (-want +got):\n%s", diff)
	}
}

// Concurrent allocators (goroutines sharing the flock-protected directory)
// never get the same address.
func TestIPAMConcurrentUnique(t *testing.T) {
	dir := t.TempDir()
	p := netip.MustParsePrefix("10.0.0.0/24")
	var mu sync.Mutex
	seen := map[netip.Addr]string{}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pod := string(rune('A' + i))
			ip, err := ipam{dir: dir}.allocate(pod, p, p.Addr().Next())
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if prev, dup := seen[ip]; dup {
				t.Errorf("%s handed to %s and %s", ip, prev, pod)
			}
			seen[ip] = pod
		}()
	}
	wg.Wait()
}

func TestHostPortTagRoundTrip(t *testing.T) {
	for _, r := range []hostPortRule{
		{pod: "p1", proto: "tcp", port: 80},
		{pod: "p-2.x_y", proto: "udp", hostIP: "192.0.2.1", port: 53},
		{pod: "p3", proto: "tcp", hostIP: "fd00::1", port: 8443},
	} {
		got, ok := parseTag([]byte(r.tag()))
		if !ok || got != r {
			t.Errorf("parseTag(%q) = %+v, %v", r.tag(), got, ok)
		}
	}
	for _, bad := range []string{"", "other", "cradle pod=x tcp", "cradle pod=x tcp *:notaport"} {
		if _, ok := parseTag([]byte(bad)); ok {
			t.Errorf("parseTag(%q) accepted", bad)
		}
	}
}

func TestVethName(t *testing.T) {
	a, b := vethName("pod-a"), vethName("pod-b")
	if len(a) != 15 || a == b || a != vethName("pod-a") {
		t.Errorf("vethName: %q %q", a, b)
	}
}

func TestValidID(t *testing.T) {
	for id, ok := range map[string]bool{"abc": true, "a-b_c.d": true, "": false, "..": false, "a/b": false, "a b": false} {
		if err := validID(id); (err == nil) != ok {
			t.Errorf("validID(%q) = %v", id, err)
		}
	}
}
