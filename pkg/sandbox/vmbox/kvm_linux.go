package vmbox

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// KVM ioctls (linux/kvm.h).
const (
	kvmGetAPIVersion       = 0xAE00
	kvmCreateVM            = 0xAE01
	kvmGetVCPUMmapSize     = 0xAE04
	kvmCreateVCPU          = 0xAE41
	kvmSetUserMemoryRegion = 0x4020AE46
	kvmRun                 = 0xAE80
	kvmSetRegs             = 0x4090AE82
	kvmGetSregs            = 0x8138AE83
	kvmSetSregs            = 0x4138AE84
	kvmExitHLT             = 5
	kvmAPIVersion          = 12
)

// ProbeKVM runs a one-instruction guest (hlt, in real mode) on devKVM and
// reports whether it really ran: a /dev/kvm that exists can still be
// unusable (no permission, nested virtualisation without support, a KVM
// flavour that rejects plain guests).
func ProbeKVM(devKVM string) error {
	kvm, err := os.OpenFile(devKVM, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer kvm.Close()
	if v, err := ioctl(kvm.Fd(), kvmGetAPIVersion, 0); err != nil || v != kvmAPIVersion {
		return fmt.Errorf("KVM API version %d, %v", v, err)
	}
	vmfd, err := ioctl(kvm.Fd(), kvmCreateVM, 0)
	if err != nil {
		return fmt.Errorf("create VM: %w", err)
	}
	defer unix.Close(int(vmfd))

	mem, err := unix.Mmap(-1, 0, 0x10000, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		return err
	}
	defer unix.Munmap(mem)
	mem[0x1000] = 0xf4 // hlt
	region := make([]byte, 32)
	binary.LittleEndian.PutUint64(region[16:], uint64(len(mem)))
	binary.LittleEndian.PutUint64(region[24:], uint64(uintptr(unsafe.Pointer(&mem[0])))) //nolint:gosec // G103: KVM takes the guest memory's address
	if _, err := ioctlPtr(vmfd, kvmSetUserMemoryRegion, region); err != nil {
		return fmt.Errorf("set guest memory: %w", err)
	}
	vcpu, err := ioctl(vmfd, kvmCreateVCPU, 0)
	if err != nil {
		return fmt.Errorf("create vCPU: %w", err)
	}
	defer unix.Close(int(vcpu))
	return runHLT(kvm.Fd(), vcpu)
}

func runHLT(kvmFd, vcpu uintptr) error {
	size, err := ioctl(kvmFd, kvmGetVCPUMmapSize, 0)
	if err != nil {
		return err
	}
	run, err := unix.Mmap(int(vcpu), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	defer unix.Munmap(run)
	sregs := make([]byte, 312)
	if _, err := ioctlPtr(vcpu, kvmGetSregs, sregs); err != nil {
		return fmt.Errorf("get sregs: %w", err)
	}
	binary.LittleEndian.PutUint64(sregs[0:], 0)  // cs.base
	binary.LittleEndian.PutUint16(sregs[12:], 0) // cs.selector
	if _, err := ioctlPtr(vcpu, kvmSetSregs, sregs); err != nil {
		return fmt.Errorf("set sregs: %w", err)
	}
	regs := make([]byte, 144)
	binary.LittleEndian.PutUint64(regs[128:], 0x1000) // rip
	binary.LittleEndian.PutUint64(regs[136:], 0x2)    // rflags
	if _, err := ioctlPtr(vcpu, kvmSetRegs, regs); err != nil {
		return fmt.Errorf("set regs: %w", err)
	}
	if _, err := ioctl(vcpu, kvmRun, 0); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	if reason := binary.LittleEndian.Uint32(run[8:]); reason != kvmExitHLT {
		return fmt.Errorf("the guest exited with reason %d, not hlt", reason)
	}
	return nil
}

func ioctl(fd, req, arg uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, req, arg)
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}

func ioctlPtr(fd, req uintptr, buf []byte) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, req, uintptr(unsafe.Pointer(&buf[0]))) //nolint:gosec // G103: an ioctl argument
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}
