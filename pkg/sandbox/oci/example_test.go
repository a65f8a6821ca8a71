package oci_test

import (
	"context"
	"fmt"
	"testing/fstest"

	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/cradle-runtime/cradle/pkg/sandbox/oci"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func ExampleBuild() {
	in := oci.Input{
		ID:        "c1",
		SandboxID: "p1",
		Config: ctrconfig.Container{
			Name:      "app",
			Args:      []string{"--port=8080"},
			Resources: &ctrconfig.Resources{OOMScoreAdj: -997},
		},
		Pod:        ctrconfig.Pod{Name: "app-0"},
		Image:      ocispec.ImageConfig{Entrypoint: []string{"/app"}, User: "app"},
		RootfsPath: "rootfs",
		Namespaces: oci.PodNamespaces{Network: "/run/netns/p1"},
		Host:       oci.Host{CgroupV2: true, MinOOMScoreAdj: -500},
	}
	image := fstest.MapFS{"etc/passwd": {Data: []byte("app:x:1000:1000::/:/bin/sh\n")}}
	res, err := oci.Build(context.Background(), in, oci.WithImageFS(image))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Spec.Process.Args, res.Spec.Process.User.UID, *res.Spec.Process.OOMScoreAdj)
	fmt.Println(res.Warnings)
	// Output:
	// [/app --port=8080] 1000 -500
	// [oom_score_adj -997 raised to -500: the runtime may not set a lower value]
}
