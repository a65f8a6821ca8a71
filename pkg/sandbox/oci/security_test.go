package oci

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestApplyCapabilities(t *testing.T) {
	without := func(drop ...string) []string {
		return slices.DeleteFunc(defaultCapabilities(), func(c string) bool { return slices.Contains(drop, c) })
	}
	tests := []struct {
		name    string
		caps    ctrconfig.Capabilities
		want    []string
		wantErr error
	}{
		{name: "none", want: defaultCapabilities()},
		{name: "add", caps: ctrconfig.Capabilities{Add: []string{"net_admin", "CAP_SYS_TIME"}}, want: append(defaultCapabilities(), "CAP_NET_ADMIN", "CAP_SYS_TIME")},
		{name: "add existing", caps: ctrconfig.Capabilities{Add: []string{"KILL"}}, want: defaultCapabilities()},
		{name: "drop", caps: ctrconfig.Capabilities{Drop: []string{"NET_RAW", "mknod"}}, want: without("CAP_NET_RAW", "CAP_MKNOD")},
		{name: "drop all add one", caps: ctrconfig.Capabilities{Drop: []string{"ALL"}, Add: []string{"NET_BIND_SERVICE"}}, want: []string{"CAP_NET_BIND_SERVICE"}},
		{name: "drop all", caps: ctrconfig.Capabilities{Drop: []string{"all"}}, want: []string{}},
		{name: "add all drop one", caps: ctrconfig.Capabilities{Add: []string{"ALL"}, Drop: []string{"SYS_ADMIN"}}, want: slices.DeleteFunc(allCapabilities(), func(c string) bool { return c == "CAP_SYS_ADMIN" })},
		{name: "add all drop all", caps: ctrconfig.Capabilities{Add: []string{"ALL"}, Drop: []string{"ALL"}}, want: []string{}},
		{name: "unknown", caps: ctrconfig.Capabilities{Add: []string{"CAP_FLY"}}, wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := applyCapabilities(defaultCapabilities(), tt.caps)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("caps (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAppArmorProfile(t *testing.T) {
	local := &ctrconfig.SecurityProfile{Type: ctrconfig.ProfileLocalhost, LocalhostRef: "my-profile"}
	unconfined := &ctrconfig.SecurityProfile{Type: ctrconfig.ProfileUnconfined}
	tests := []struct {
		name       string
		sc         *ctrconfig.SecurityProfile
		privileged bool
		enabled    bool
		want       string
		wantErr    error
	}{
		{name: "default", enabled: true, want: AppArmorDefaultProfile},
		{name: "default, disabled", want: ""},
		{name: "default, privileged", enabled: true, privileged: true, want: ""},
		{name: "localhost", sc: local, enabled: true, want: "my-profile"},
		{name: "localhost, privileged", sc: local, enabled: true, privileged: true, want: "my-profile"},
		{name: "localhost, disabled", sc: local, wantErr: errdefs.ErrFailedPrecondition},
		{name: "unconfined", sc: unconfined, enabled: true, want: ""},
		{name: "localhost without ref", sc: &ctrconfig.SecurityProfile{Type: ctrconfig.ProfileLocalhost}, enabled: true, wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := appArmorProfile(tt.sc, tt.privileged, tt.enabled)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("profile = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPathsOrDefault(t *testing.T) {
	tests := []struct {
		name   string
		given  []string
		userns bool
		want   []string
	}{
		{name: "nil gives defaults", want: defaultMaskedPaths()},
		{name: "given wins", given: []string{"/proc/x"}, want: []string{"/proc/x"}},
		{name: "nil in userns is unmasked", userns: true, want: nil},
		{name: "given in userns", given: []string{"/proc/x"}, userns: true, want: []string{"/proc/x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, pathsOrDefault(tt.given, defaultMaskedPaths(), tt.userns)); diff != "" {
				t.Errorf("paths (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCapabilitiesStep(t *testing.T) {
	tests := []struct {
		name       string
		caps       ctrconfig.Capabilities
		privileged bool
		want       *specs.LinuxCapabilities
		wantErr    error
	}{
		{
			name: "ambient joins every set",
			caps: ctrconfig.Capabilities{Drop: []string{"ALL"}, AddAmbient: []string{"NET_BIND_SERVICE"}},
			want: &specs.LinuxCapabilities{
				Bounding: []string{"CAP_NET_BIND_SERVICE"}, Effective: []string{"CAP_NET_BIND_SERVICE"}, Permitted: []string{"CAP_NET_BIND_SERVICE"},
				Inheritable: []string{"CAP_NET_BIND_SERVICE"}, Ambient: []string{"CAP_NET_BIND_SERVICE"},
			},
		},
		{
			name:       "privileged ignores drops",
			caps:       ctrconfig.Capabilities{Drop: []string{"ALL"}},
			privileged: true,
			want:       &specs.LinuxCapabilities{Bounding: allCapabilities(), Effective: allCapabilities(), Permitted: allCapabilities()},
		},
		{name: "unknown ambient", caps: ctrconfig.Capabilities{AddAmbient: []string{"NOPE"}}, wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testInput()
			in.Config.Security.Capabilities = tt.caps
			in.Config.Security.Privileged = tt.privileged
			b := &builder{in: in, spec: baseSpec(in)}
			err := b.capabilities(context.Background())
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, b.spec.Process.Capabilities); diff != "" {
				t.Errorf("capabilities (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildSeccompFollowsCapabilities(t *testing.T) {
	in := testInput()
	in.Host.RuntimeDefaultSeccomp = SeccompBuiltin
	in.Config.Security.Capabilities = ctrconfig.Capabilities{Add: []string{"SYS_ADMIN"}, Drop: []string{"SYS_CHROOT"}}
	in.Config.Security.Seccomp = &ctrconfig.SecurityProfile{Type: ctrconfig.ProfileRuntimeDefault}
	res, err := Build(context.Background(), in, WithImageFS(testImageFS()))
	if err != nil {
		t.Fatal(err)
	}
	p := res.Spec.Linux.Seccomp
	got := map[string]bool{"mount": allowed(p, "mount"), "chroot": allowed(p, "chroot"), "read": allowed(p, "read")}
	want := map[string]bool{"mount": true, "chroot": false, "read": true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("allowed (-want +got):\n%s", diff)
	}
}
