package integration

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestDevices: a container gets the host devices its config names (a
// device plugin's), at the path it asks for, with the access it asks for;
// a privileged container gets every host device; a path that is no
// device is InvalidArgument.
func TestDevices(t *testing.T) {
	d, image := startFeatureDaemon(t)
	for _, h := range handlers {
		t.Run(h, func(t *testing.T) {
			podCfg := podSandboxConfig("dev-" + h)
			podCfg.Linux.SecurityContext.Privileged = true
			k := newPodKit(t, d, image, h, podCfg)

			cfg := &runtime.ContainerConfig{Devices: []*runtime.Device{{HostPath: "/dev/null", ContainerPath: "/dev/mynull", Permissions: "rw"}}}
			id := k.run("plain", cfg, "sleep", "1000")
			if out, code := k.exec(id, "sh", "-c", "echo x > /dev/mynull && stat -c %F:%t:%T /dev/mynull"); code != 0 || strings.TrimSpace(out) != "character special file:1:3" {
				t.Errorf("the device at /dev/mynull: %q (exit %d), want /dev/null's node, writable", out, code)
			}
			if _, code := k.exec(id, "test", "-c", "/dev/kmsg"); code == 0 {
				t.Error("a container that is not privileged has the host's /dev/kmsg")
			}

			priv := containerSC(&runtime.LinuxContainerSecurityContext{Privileged: true})
			priv.Metadata = &runtime.ContainerMetadata{Name: "privileged"}
			pid := k.run("privileged", priv, "sleep", "1000")
			if out, code := k.exec(pid, "sh", "-c", "head -c0 /dev/kmsg && stat -c %t:%T /dev/kmsg"); code != 0 || strings.TrimSpace(out) != "1:b" {
				t.Errorf("a privileged container's /dev/kmsg: %q (exit %d), want the host's (1:11)", out, code)
			}

			for _, bad := range []string{"/nonexistent", "/etc/hostname"} {
				c := &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "bad"}, Command: []string{"true"},
					Devices: []*runtime.Device{{HostPath: bad, ContainerPath: "/dev/x"}}}
				if _, err := k.create(c); status.Code(err) != codes.InvalidArgument {
					t.Errorf("device %s: %v, want InvalidArgument", bad, err)
				}
			}
		})
	}
}
