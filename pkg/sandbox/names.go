package sandbox

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"

	"github.com/containerd/errdefs"
)

// newID returns a 64-hex-digit ID, as kubelet and crictl expect.
func newID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("read random: %v", err)) // the kernel's CSPRNG does not fail
	}
	return hex.EncodeToString(b[:])
}

// registrar reserves unique names: a second object under a name in use is
// AlreadyExists.
type registrar struct {
	mu    sync.Mutex
	names map[string]string // name → id
}

func newRegistrar() *registrar { return &registrar{names: map[string]string{}} }

func (r *registrar) reserve(name, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if other, ok := r.names[name]; ok && other != id {
		return fmt.Errorf("name %q is in use by %s: %w", name, other, errdefs.ErrAlreadyExists)
	}
	r.names[name] = id
	return nil
}

func (r *registrar) release(name, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.names[name] == id {
		delete(r.names, name)
	}
}
