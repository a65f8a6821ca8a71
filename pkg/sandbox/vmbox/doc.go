// Package vmbox runs pods in microVMs: QEMU's microvm machine booting a
// prepared guest kernel (kernel.go) and an initramfs holding cradle itself
// as the in-guest agent (initramfs.go), driven through QMP, with the agent
// reached over virtio-serial (qemu.go, vm.go).
package vmbox
