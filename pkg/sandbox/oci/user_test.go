package oci

import (
	"context"
	"errors"
	"testing"
	"testing/fstest"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/google/go-cmp/cmp"
)

func testImageFS() fstest.MapFS {
	return fstest.MapFS{
		"etc/passwd": {Data: []byte(`# users
root:x:0:0:root:/root:/bin/sh
www-data:x:33:33:www:/var/www:/usr/sbin/nologin
app:x:1000:1000::/home/app:/bin/sh
broken:x:notanumber:1::/:/bin/sh
`)},
		"etc/group": {Data: []byte(`root:x:0:
www-data:x:33:app
app:x:1000:
video:x:44:app,www-data
audio:x:29:
`)},
	}
}

func TestResolveUser(t *testing.T) {
	db, err := loadUserDB(testImageFS())
	if err != nil {
		t.Fatal(err)
	}
	i64 := func(v int64) *int64 { return &v }
	tests := []struct {
		name      string
		sc        ctrconfig.Security
		imageUser string
		want      identity
		wantErr   error
	}{
		{name: "default root", want: identity{uid: 0, gid: 0, name: "root"}},
		{name: "image uid", imageUser: "1000", want: identity{uid: 1000, gid: 1000, name: "app", extraGids: []uint32{33, 44}}},
		{name: "image name", imageUser: "www-data", want: identity{uid: 33, gid: 33, name: "www-data", extraGids: []uint32{44}}},
		{name: "image uid:gid", imageUser: "1000:29", want: identity{uid: 1000, gid: 29, name: "app", extraGids: []uint32{33, 44}}},
		{name: "image name:group", imageUser: "app:audio", want: identity{uid: 1000, gid: 29, name: "app", extraGids: []uint32{33, 44}}},
		{name: "unknown uid", imageUser: "4242", want: identity{uid: 4242}},
		{name: "unknown name", imageUser: "nobody", wantErr: errdefs.ErrInvalidArgument},
		{name: "unknown group", imageUser: "app:nogroup", wantErr: errdefs.ErrInvalidArgument},
		{name: "negative", imageUser: "-1", wantErr: errdefs.ErrInvalidArgument},
		// moby/sys/user parses this line's uid as 0 (it ignores conversion
		// errors): the reason this package keeps its own parser.
		{name: "a line whose uid does not parse names no user, never root", imageUser: "broken", wantErr: errdefs.ErrInvalidArgument},
		{name: "run_as_user beats image", sc: ctrconfig.Security{RunAsUser: i64(33)}, imageUser: "app", want: identity{uid: 33, gid: 33, name: "www-data", extraGids: []uint32{44}}},
		{name: "run_as_username beats run_as_user", sc: ctrconfig.Security{RunAsUser: i64(33), RunAsUsername: "app"}, want: identity{uid: 1000, gid: 1000, name: "app", extraGids: []uint32{33, 44}}},
		{name: "run_as_group", sc: ctrconfig.Security{RunAsUser: i64(1000), RunAsGroup: i64(5)}, want: identity{uid: 1000, gid: 5, name: "app", extraGids: []uint32{33, 44}}},
		{name: "run_as_group out of range", sc: ctrconfig.Security{RunAsGroup: i64(-2)}, wantErr: errdefs.ErrInvalidArgument},
		{name: "run_as_username unknown", sc: ctrconfig.Security{RunAsUsername: "ghost"}, wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolveUser(db, tt.sc, tt.imageUser)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(identity{})); diff != "" {
				t.Errorf("identity (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadUserDBWithoutFiles(t *testing.T) {
	db, err := loadUserDB(fstest.MapFS{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := resolveUser(db, ctrconfig.Security{}, "app"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("name without /etc/passwd: err = %v, want InvalidArgument", err)
	}
	if got, err := resolveUser(db, ctrconfig.Security{}, "7:8"); err != nil || got.uid != 7 || got.gid != 8 {
		t.Errorf("numeric without /etc/passwd = %+v, %v", got, err)
	}
}

func TestSupplementalGroups(t *testing.T) {
	id := identity{uid: 1000, gid: 1000, name: "app", extraGids: []uint32{33, 44}}
	tests := []struct {
		name    string
		sc      ctrconfig.Security
		want    []uint32
		wantErr error
	}{
		{name: "merge default", want: []uint32{1000, 33, 44}},
		{name: "merge with requested", sc: ctrconfig.Security{SupplementalGroups: []int64{44, 2000}}, want: []uint32{1000, 33, 44, 2000}},
		{name: "strict", sc: ctrconfig.Security{SupplementalGroupsPolicy: ctrconfig.GroupsStrict, SupplementalGroups: []int64{2000, 1000}}, want: []uint32{1000, 2000}},
		{name: "out of range", sc: ctrconfig.Security{SupplementalGroups: []int64{-1}}, wantErr: errdefs.ErrInvalidArgument},
		{name: "unknown policy", sc: ctrconfig.Security{SupplementalGroupsPolicy: 7}, wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := supplementalGroups(id, tt.sc)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("groups (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRunAsGroupNeedsAUser(t *testing.T) {
	in := testInput()
	in.Config.Security.RunAsGroup = ptr(int64(1000))
	in.Config.Security.RunAsUser = nil
	in.Config.Security.RunAsUsername = ""
	if _, err := Build(context.Background(), in, WithImageFS(testImageFS())); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("run_as_group alone: %v, want InvalidArgument", err)
	}
	in.Config.Security.RunAsUser = ptr(int64(1000))
	if _, err := Build(context.Background(), in, WithImageFS(testImageFS())); err != nil {
		t.Errorf("run_as_group with run_as_user: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }
