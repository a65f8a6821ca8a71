package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// SeccompDefault says what RuntimeDefault means on this host.
type SeccompDefault int

const (
	// SeccompBuiltin applies [DefaultSeccompProfile].
	SeccompBuiltin SeccompDefault = iota
	// SeccompUnconfined applies no filter (hosts without seccomp).
	SeccompUnconfined
)

// ProfileLoader reads the seccomp profile a Localhost reference names (a
// path under the kubelet's seccomp root). It is the only way Build reads a
// profile.
type ProfileLoader func(ctx context.Context, ref string) ([]byte, error)

// seccomp sets the container's seccomp filter. Privileged containers and
// Unconfined get none.
func (b *builder) seccomp(ctx context.Context) error {
	if b.privileged() {
		return nil
	}
	// No profile at all is unconfined, as the CRI has it (kubelet always
	// names one: RuntimeDefault unless the pod says otherwise).
	typ, ref, err := securityProfile(b.security().Seccomp, ctrconfig.ProfileUnconfined)
	if err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	switch typ {
	case ctrconfig.ProfileUnconfined:
		return nil
	case ctrconfig.ProfileLocalhost:
		b.spec.Linux.Seccomp, err = b.loadSeccomp(ctx, ref)
		return err
	}
	if b.in.Host.RuntimeDefaultSeccomp == SeccompUnconfined {
		return nil
	}
	b.spec.Linux.Seccomp = DefaultSeccompProfile(b.spec.Process.Capabilities.Bounding)
	return nil
}

func (b *builder) loadSeccomp(ctx context.Context, ref string) (*specs.LinuxSeccomp, error) {
	if b.opts.loader == nil {
		return nil, fmt.Errorf("seccomp profile %q: no profile loader: %w", ref, errdefs.ErrFailedPrecondition)
	}
	data, err := b.opts.loader(ctx, ref)
	if errors.Is(err, fs.ErrNotExist) {
		// The pod names a profile the node does not have: the pod is wrong.
		return nil, fmt.Errorf("load seccomp profile %q: %w: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	if err != nil {
		return nil, fmt.Errorf("load seccomp profile %q: %w", ref, err)
	}
	return parseSeccomp(ref, data)
}

// parseSeccomp decodes a profile in the OCI form (Docker's profile format
// decodes the same way: its extra keys are ignored).
func parseSeccomp(ref string, data []byte) (*specs.LinuxSeccomp, error) {
	var p specs.LinuxSeccomp
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("seccomp profile %q: %v: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	if p.DefaultAction == "" {
		return nil, fmt.Errorf("seccomp profile %q has no defaultAction: %w", ref, errdefs.ErrInvalidArgument)
	}
	return &p, nil
}
