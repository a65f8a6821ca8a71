package kmod

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoadOrder(t *testing.T) {
	dep := `kernel/fs/fuse/fuse.ko:
kernel/fs/fuse/virtiofs.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko kernel/fs/fuse/fuse.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
`
	md, err := ParseModulesDep(strings.NewReader(dep))
	if err != nil {
		t.Fatal(err)
	}
	got, err := md.LoadOrder([]string{"kernel/fs/fuse/virtiofs.ko", "kernel/drivers/char/virtio_console.ko"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"kernel/fs/fuse/fuse.ko", "kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
		"kernel/fs/fuse/virtiofs.ko", "kernel/drivers/char/virtio_console.ko"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Error(diff)
	}
	if _, err := md.LoadOrder([]string{"kernel/nope.ko"}); err == nil {
		t.Error("unknown module: no error")
	}
	cyc, _ := ParseModulesDep(strings.NewReader("a.ko: b.ko\nb.ko: a.ko\n"))
	if _, err := cyc.LoadOrder([]string{"a.ko"}); err == nil {
		t.Error("cycle: no error")
	}
}
