package oci

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/google/go-cmp/cmp"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestProcessArgs(t *testing.T) {
	img := ocispec.ImageConfig{Entrypoint: []string{"/entry"}, Cmd: []string{"cmd", "arg"}}
	tests := []struct {
		name    string
		command []string
		args    []string
		image   ocispec.ImageConfig
		want    []string
		wantErr error
	}{
		{name: "image only", image: img, want: []string{"/entry", "cmd", "arg"}},
		{name: "command replaces entrypoint and cmd", command: []string{"/bin/sh"}, image: img, want: []string{"/bin/sh"}},
		{name: "command and args", command: []string{"/bin/sh"}, args: []string{"-c", "true"}, image: img, want: []string{"/bin/sh", "-c", "true"}},
		{name: "args replace cmd", args: []string{"x"}, image: img, want: []string{"/entry", "x"}},
		{name: "args without entrypoint", args: []string{"/bin/true"}, image: ocispec.ImageConfig{Cmd: []string{"no"}}, want: []string{"/bin/true"}},
		{name: "cmd only", image: ocispec.ImageConfig{Cmd: []string{"/app"}}, want: []string{"/app"}},
		{name: "nothing", wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := processArgs(ctrconfig.Container{Command: tt.command, Args: tt.args}, tt.image)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("args (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWorkingDir(t *testing.T) {
	tests := []struct {
		config, image string
		want          string
		wantErr       error
	}{
		{"", "", "/", nil},
		{"", "/srv", "/srv", nil},
		{"/app/", "/srv", "/app", nil},
		{"app", "", "", errdefs.ErrInvalidArgument},
		{"", "rel", "", errdefs.ErrInvalidArgument},
		{"/app/../../etc", "", "", errdefs.ErrInvalidArgument},
		{"/a/./b", "", "/a/b", nil},
	}
	for _, tt := range tests {
		got, err := workingDir(tt.config, tt.image)
		if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) || got != tt.want {
			t.Errorf("workingDir(%q, %q) = %q, %v; want %q, %v", tt.config, tt.image, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestProcessEnv(t *testing.T) {
	kv := func(k, v string) ctrconfig.EnvVar { return ctrconfig.EnvVar{Key: k, Value: v} }
	tests := []struct {
		name     string
		image    []string
		envs     []ctrconfig.EnvVar
		hostname string
		want     []string
	}{
		{name: "defaults", want: []string{defaultPathEnv}},
		{
			name:     "image then container, later wins in place",
			image:    []string{"PATH=/img", "A=1", "B=2"},
			envs:     []ctrconfig.EnvVar{kv("B", "3"), kv("C", "x=y"), kv("A", "")},
			hostname: "pod",
			want:     []string{"PATH=/img", "HOSTNAME=pod", "A=", "B=3", "C=x=y"},
		},
		{name: "container overrides hostname", envs: []ctrconfig.EnvVar{kv("HOSTNAME", "me")}, hostname: "pod", want: []string{defaultPathEnv, "HOSTNAME=me"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, processEnv(tt.image, tt.envs, tt.hostname)); diff != "" {
				t.Errorf("env (-want +got):\n%s", diff)
			}
		})
	}
}
