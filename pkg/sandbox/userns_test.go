package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/cradle-runtime/cradle/pkg/testutil"
	"github.com/google/go-cmp/cmp"
)

func TestIDMapRootfs(t *testing.T) {
	testutil.RequireRoot(t) // chown
	u := &ctrconfig.IDMappings{UIDs: []ctrconfig.IDMapping{{HostID: 196608, Size: 65536}}, GIDs: []ctrconfig.IDMapping{{HostID: 262144, Size: 65536}}}
	upper := t.TempDir()
	overlay := mount.Mount{Type: "overlay", Source: "overlay", Options: []string{"index=off", "workdir=/w", "upperdir=" + upper, "lowerdir=/l2:/l1"}}
	maps := []string{"uidmap=0:196608:65536", "gidmap=0:262144:65536"}
	tests := []struct {
		name    string
		in      []mount.Mount
		u       *ctrconfig.IDMappings
		want    []mount.Mount
		wantErr error
	}{
		{name: "host users: as it is", in: []mount.Mount{overlay}, want: []mount.Mount{overlay}},
		{name: "overlay", in: []mount.Mount{overlay}, u: u,
			want: []mount.Mount{{Type: "overlay", Source: "overlay", Options: append(append([]string{}, overlay.Options...), maps...)}}},
		{name: "bind of a snapshot without parents", in: []mount.Mount{{Type: "bind", Source: "/s", Options: []string{"rbind", "rw"}}}, u: u,
			want: []mount.Mount{{Type: "bind", Source: "/s", Options: append([]string{"rbind", "rw"}, maps...)}}},
		{name: "another type", in: []mount.Mount{{Type: "erofs", Source: "/img"}}, u: u, wantErr: errdefs.ErrFailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := idmapRootfs(tt.in, tt.u)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("mounts (-want +got):\n%s", diff)
			}
		})
	}
	if diff := cmp.Diff([]string{"index=off", "workdir=/w", "upperdir=" + upper, "lowerdir=/l2:/l1"}, overlay.Options); diff != "" {
		t.Errorf("the input's options changed (-want +got):\n%s", diff)
	}
	fi, err := os.Stat(filepath.Clean(upper))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 196608 || st.Gid != 262144 {
		t.Errorf("upper directory owned by %d:%d, want the mapped root 196608:262144", st.Uid, st.Gid)
	}
}
