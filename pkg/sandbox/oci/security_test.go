package oci

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestApplyCapabilities(t *testing.T) {
	without := func(drop ...string) []string {
		return slices.DeleteFunc(defaultCapabilities(), func(c string) bool { return slices.Contains(drop, c) })
	}
	tests := []struct {
		name    string
		caps    *runtime.Capability
		want    []string
		wantErr error
	}{
		{name: "none", want: defaultCapabilities()},
		{name: "add", caps: &runtime.Capability{AddCapabilities: []string{"net_admin", "CAP_SYS_TIME"}}, want: append(defaultCapabilities(), "CAP_NET_ADMIN", "CAP_SYS_TIME")},
		{name: "add existing", caps: &runtime.Capability{AddCapabilities: []string{"KILL"}}, want: defaultCapabilities()},
		{name: "drop", caps: &runtime.Capability{DropCapabilities: []string{"NET_RAW", "mknod"}}, want: without("CAP_NET_RAW", "CAP_MKNOD")},
		{name: "drop all add one", caps: &runtime.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_BIND_SERVICE"}}, want: []string{"CAP_NET_BIND_SERVICE"}},
		{name: "drop all", caps: &runtime.Capability{DropCapabilities: []string{"all"}}, want: []string{}},
		{name: "add all drop one", caps: &runtime.Capability{AddCapabilities: []string{"ALL"}, DropCapabilities: []string{"SYS_ADMIN"}}, want: slices.DeleteFunc(allCapabilities(), func(c string) bool { return c == "CAP_SYS_ADMIN" })},
		{name: "add all drop all", caps: &runtime.Capability{AddCapabilities: []string{"ALL"}, DropCapabilities: []string{"ALL"}}, want: []string{}},
		{name: "unknown", caps: &runtime.Capability{AddCapabilities: []string{"CAP_FLY"}}, wantErr: errdefs.ErrInvalidArgument},
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
	local := &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost, LocalhostRef: "my-profile"}
	unconfined := &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Unconfined}
	tests := []struct {
		name       string
		sc         *runtime.LinuxContainerSecurityContext
		privileged bool
		enabled    bool
		want       string
		wantErr    error
	}{
		{name: "default", enabled: true, want: AppArmorDefaultProfile},
		{name: "default, disabled", want: ""},
		{name: "default, privileged", enabled: true, privileged: true, want: ""},
		{name: "localhost", sc: &runtime.LinuxContainerSecurityContext{Apparmor: local}, enabled: true, want: "my-profile"},
		{name: "localhost, privileged", sc: &runtime.LinuxContainerSecurityContext{Apparmor: local}, enabled: true, privileged: true, want: "my-profile"},
		{name: "localhost, disabled", sc: &runtime.LinuxContainerSecurityContext{Apparmor: local}, wantErr: errdefs.ErrFailedPrecondition},
		{name: "unconfined", sc: &runtime.LinuxContainerSecurityContext{Apparmor: unconfined}, enabled: true, want: ""},
		{name: "legacy localhost", sc: legacyAppArmor("localhost/p"), enabled: true, want: "p"},
		{name: "legacy runtime/default", sc: legacyAppArmor("runtime/default"), enabled: true, want: AppArmorDefaultProfile},
		{name: "legacy garbage", sc: legacyAppArmor("what"), enabled: true, wantErr: errdefs.ErrInvalidArgument},
		{name: "localhost without ref", sc: &runtime.LinuxContainerSecurityContext{Apparmor: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Localhost}}, enabled: true, wantErr: errdefs.ErrInvalidArgument},
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

func legacyAppArmor(p string) *runtime.LinuxContainerSecurityContext {
	sc := &runtime.LinuxContainerSecurityContext{}
	sc.ApparmorProfile = p //nolint:staticcheck // older kubelets still send the deprecated field
	return sc
}

func TestCapabilitiesStep(t *testing.T) {
	tests := []struct {
		name       string
		caps       *runtime.Capability
		privileged bool
		want       *specs.LinuxCapabilities
		wantErr    error
	}{
		{
			name: "ambient joins every set",
			caps: &runtime.Capability{DropCapabilities: []string{"ALL"}, AddAmbientCapabilities: []string{"NET_BIND_SERVICE"}},
			want: &specs.LinuxCapabilities{
				Bounding: []string{"CAP_NET_BIND_SERVICE"}, Effective: []string{"CAP_NET_BIND_SERVICE"}, Permitted: []string{"CAP_NET_BIND_SERVICE"},
				Inheritable: []string{"CAP_NET_BIND_SERVICE"}, Ambient: []string{"CAP_NET_BIND_SERVICE"},
			},
		},
		{
			name:       "privileged ignores drops",
			caps:       &runtime.Capability{DropCapabilities: []string{"ALL"}},
			privileged: true,
			want:       &specs.LinuxCapabilities{Bounding: allCapabilities(), Effective: allCapabilities(), Permitted: allCapabilities()},
		},
		{name: "unknown ambient", caps: &runtime.Capability{AddAmbientCapabilities: []string{"NOPE"}}, wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testInput()
			in.Config.Linux.SecurityContext.Capabilities = tt.caps
			in.Config.Linux.SecurityContext.Privileged = tt.privileged
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
	in.Config.Linux.SecurityContext.Capabilities = &runtime.Capability{AddCapabilities: []string{"SYS_ADMIN"}, DropCapabilities: []string{"SYS_CHROOT"}}
	in.Config.Linux.SecurityContext.Seccomp = &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}
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
