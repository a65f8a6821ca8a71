package vmbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
	"github.com/cradle-runtime/cradle/pkg/config"
)

// tcgCacheMiB is the size of a TCG guest's translated-code cache.
const tcgCacheMiB = 32

// VMSpec is everything QEMU's command line is built from.
type VMSpec struct {
	Name      string // shown in ps (-name)
	QEMU      string
	Kernel    string // vmlinux (PVH) or bzImage
	Initramfs string
	VCPUs     int
	MemoryMiB int
	Accel     string // config.AccelKVM or config.AccelTCG (resolved, never auto)
	// TSCKHz is the host TSC rate passed to a TCG guest (0: not passed).
	TSCKHz uint64
	// Dir holds the VM's sockets and pid file (short: unix socket paths
	// are limited to 107 bytes).
	Dir string
	// NetNS is the network namespace QEMU runs in ("": the caller's); not
	// part of the command line.
	NetNS string
	// ConsoleLog, when set, turns the ISA serial port on and writes the
	// guest console there (debugging; it slows a TCG boot).
	ConsoleLog string
	// VirtioFS adds the pod's shared directory: a vhost-user-fs device on
	// VirtioFSSocket (virtiofsd's), tag api.SharedTag. Guest RAM is then a
	// shared memfd, which vhost-user needs.
	VirtioFS bool
	// CmdlineDevices says the guest kernel takes its virtio devices from
	// its command line (virtio_mmio built in with
	// CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES: the minimal kernel): the machine
	// then has no ACPI and the command line lists the devices. Otherwise
	// (Debian's kernel: a modular virtio_mmio without that option) the
	// guest finds them in the ACPI tables.
	CmdlineDevices bool
	// Tap, when set, is the tap device (in QEMU's network namespace) of
	// the guest's NIC, whose hardware address is MAC.
	Tap string
	MAC string
	// TemplateRAM, when set, is the file that holds guest RAM. A template
	// boot (Incoming false) maps it shared and fills it; a clone
	// (Incoming) maps it private, copy-on-write, so that the pages no
	// clone writes stay one copy in the host's page cache for them all.
	// Such VMs have the same devices whatever the pod (template.go): a
	// NIC (a template's on a hub port that goes nowhere), a virtio-9p
	// share (Shared9P, a template's empty) instead of virtiofs, and no
	// free page reporting (QEMU 7.2 would punch the freed pages out of
	// the file, from under every other clone).
	TemplateRAM string
	// Incoming starts the VM paused, waiting for its template's device
	// state (-incoming defer).
	Incoming bool
	// Shared9P is the host directory a templated VM exports to its
	// guest over virtio-9p, tag api.SharedTag.
	Shared9P string
}

// templated says the VM is a template or a clone of one.
func (s VMSpec) templated() bool { return s.TemplateRAM != "" }

// templateMAC is the NIC address of template VMs, and so of their clones
// until the agent gives the NIC the pod's (SetupNetwork).
const templateMAC = "02:00:00:00:00:01"

// hasNIC says the VM has a NIC.
func (s VMSpec) hasNIC() bool { return s.Tap != "" || s.templated() }

// nicMAC is the VM NIC's hardware address.
func (s VMSpec) nicMAC() string {
	if s.templated() {
		return templateMAC
	}
	return s.MAC
}

// AgentSocket is the host end of the guest agent's channel, under Dir.
func (s VMSpec) AgentSocket() string { return filepath.Join(s.Dir, "agent.sock") }

// QMPSocket is QEMU's QMP socket, under Dir.
func (s VMSpec) QMPSocket() string { return filepath.Join(s.Dir, "qmp.sock") }

// PIDFile is QEMU's pid file, under Dir.
func (s VMSpec) PIDFile() string { return filepath.Join(s.Dir, "qemu.pid") }

// VirtioFSSocket is virtiofsd's vhost-user socket.
func (s VMSpec) VirtioFSSocket() string { return filepath.Join(s.Dir, "vfs.sock") }

// KernelCmdline is the guest kernel's command line. The arguments after
// "--" are init's: the kernel runs /init (cradle) as `cradle agent`.
func KernelCmdline(s VMSpec) string {
	args := []string{}
	if s.ConsoleLog != "" {
		args = append(args, "console=ttyS0")
	} else {
		args = append(args, "quiet")
	}
	args = append(args,
		"panic=-1",                                                   // reboot at once on panic; -no-reboot makes that an exit
		"reboot=t",                                                   // a reboot is a triple fault, always possible on microvm
		"tsc=reliable",                                               // no clocksource watchdog: there is nothing to check the TSC against
		"no_timer_check",                                             // skip the IO-APIC timer check
		"cryptomgr.notests",                                          // no crypto self-tests at boot (seconds under TCG)
		"i8042.noaux", "i8042.nomux", "i8042.nopnp", "i8042.dumbkbd", // microvm has no i8042: do not probe long
		"random.trust_cpu=on", // RDRAND seeds the RNG: no wait for entropy
		"audit=0",             // no audit subsystem: nothing in the guest reads it
		"8250.nr_uarts=1",     // probe one serial port (the console's, when on), not four
		// Initcalls nothing in the guest needs, the slowest of Debian's
		// kernel under TCG (initcall_debug): kprobe trace events (0.2 s)
		// and the SP800-108 KDF's self-test (0.1 s).
		"initcall_blacklist=init_kprobe_trace,crypto_kdf108_init",
	)
	if s.CmdlineDevices {
		args = append(args, virtioMMIOCmdline(s)...)
	}
	if s.Accel == config.AccelTCG {
		// An emulated CPU: the guest kernel's speculation mitigations
		// (retpolines, RSB filling, page-table isolation) only slow it
		// (about 0.3 s of a boot). Under KVM they stay.
		args = append(args, "mitigations=off")
		if s.TSCKHz > 0 {
			args = append(args, "tsc_early_khz="+strconv.FormatUint(s.TSCKHz, 10))
		}
	}
	return strings.Join(append(args, "--", "agent", "--port="+api.PortName), " ")
}

// The virtio-mmio transports of QEMU's microvm machine without ACPI
// (hw/i386/microvm.c, unchanged since QEMU 4.2): eight of them, 512 bytes
// apart from mmioBase, transport i (bus virtio-mmio-bus.<i>) on the IO-APIC
// pin mmioIRQBase+i. With ACPI there are 24, from pin 16, which the DSDT
// describes.
const (
	mmioBase       = 0xfeb00000
	mmioSize       = 512
	mmioIRQBase    = 5
	mmioTransports = 8
)

// virtioDevices are the VM's virtio devices in transport order, as
// QEMUArgs places them (-device arguments without their bus) and the
// guest kernel is told of them (virtioMMIOCmdline).
func virtioDevices(s VMSpec) []string {
	devs := []string{"virtio-serial-device,max_ports=2"}
	if !s.templated() {
		// Free page reporting: the guest hands pages it frees back to the
		// host (QEMU punches them out of its RAM), so a pod VM's host
		// memory falls when its containers' does.
		devs = append(devs, "virtio-balloon-device,free-page-reporting=on")
	}
	switch {
	case s.templated():
		devs = append(devs, "virtio-9p-device,fsdev=shared,mount_tag="+api.SharedTag)
	case s.VirtioFS:
		devs = append(devs, "vhost-user-fs-device,chardev=vfs,tag="+api.SharedTag)
	}
	if s.hasNIC() {
		devs = append(devs, "virtio-net-device,netdev=net0,mac="+s.nicMAC())
	}
	return devs
}

// virtioMMIOCmdline tells a guest kernel without ACPI where its virtio
// devices are (virtio_mmio.device=<size>@<base>:<irq>). QEMU would append
// these itself (microvm's auto-kernel-cmdline), but after init's arguments
// ("--"), where the kernel does not read them.
func virtioMMIOCmdline(s VMSpec) []string {
	var out []string
	for i := range virtioDevices(s) {
		out = append(out, fmt.Sprintf("virtio_mmio.device=%d@%#x:%d", mmioSize, mmioBase+i*mmioSize, mmioIRQBase+i))
	}
	return out
}

// QEMUArgs is QEMU's argv (without argv[0]) for s: a microvm machine with no
// legacy devices, the kernel and initramfs, one virtio-serial port for the
// agent on a unix socket, QMP on another, and -no-reboot so that any guest
// reboot, power-off or panic ends the process. Pure; golden-tested.
func QEMUArgs(s VMSpec) []string {
	serial := "off"
	if s.ConsoleLog != "" {
		serial = "on"
	}
	// The RTC stays: without one the kernel waits about a second, twice,
	// for the CMOS clock's update flag (at timekeeping init and when
	// rtc_cmos probes), and the guest starts its clock at 1970.
	machine := "microvm,x-option-roms=off,rtc=on,isa-serial=" + serial
	if s.CmdlineDevices {
		// A kernel that takes its devices from its command line gets them
		// from virtioMMIOCmdline, not from QEMU (auto-kernel-cmdline),
		// and no ACPI: no ACPI interpreter reading the DSDT at boot.
		// Without ACPI's hardware-reduced mode the kernel registers the
		// PIT as its global clock and verifies its local APIC timer
		// against it: with no PIT (or no PIC to deliver its interrupt)
		// the verification fails, the guest runs with no timer tick, and
		// a boot that sleeps waits for a stray interrupt (30 s and more
		// under TCG). So these guests get both.
		machine += ",pit=on,pic=on,acpi=off,auto-kernel-cmdline=off"
	} else {
		// With ACPI (hardware-reduced on microvm) the kernel needs
		// neither: it calibrates the APIC timer against the TSC.
		machine += ",pit=off,pic=off"
	}
	if s.VirtioFS || s.templated() {
		machine += ",memory-backend=mem"
	}
	args := []string{
		"-name", s.Name,
		"-M", machine,
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
	}
	switch s.Accel {
	case config.AccelKVM:
		args = append(args, "-accel", "kvm", "-cpu", "host")
	default:
		// One thread per vCPU: multi-threaded TCG needs host cores the
		// guest would otherwise share with nothing; single is the
		// measured default on small hosts (see BenchmarkBoot).
		thread := "single"
		if s.VCPUs > 1 {
			thread = "multi"
		}
		// tb-size bounds the translated-code cache (1 GiB by default, 47 MiB
		// touched after a boot, growing with what the guest runs): 32 MiB
		// costs a boot no measurable time, 16 MiB about 0.3 s of CPU.
		args = append(args, "-accel", "tcg,thread="+thread+",tb-size="+strconv.Itoa(tcgCacheMiB), "-cpu", "max")
	}
	args = append(args,
		"-smp", strconv.Itoa(s.VCPUs),
		"-m", strconv.Itoa(s.MemoryMiB)+"M",
		"-kernel", s.Kernel,
		"-initrd", s.Initramfs,
		"-append", KernelCmdline(s),
		// Modern (v2) virtio-mmio: the legacy one is QEMU's default.
		"-global", "virtio-mmio.force-legacy=false",
		"-chardev", "socket,id=agent,path="+s.AgentSocket()+",server=on,wait=off",
		"-chardev", "socket,id=qmp,path="+s.QMPSocket()+",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		"-pidfile", s.PIDFile(),
	)
	switch {
	case s.templated():
		share := "on"
		if s.Incoming {
			share = "off"
		}
		args = append(args,
			"-object", "memory-backend-file,id=mem,size="+strconv.Itoa(s.MemoryMiB)+"M,mem-path="+s.TemplateRAM+",share="+share,
			"-fsdev", "local,id=shared,path="+s.Shared9P+",security_model=none,multidevs=remap",
		)
	case s.VirtioFS:
		args = append(args,
			"-object", "memory-backend-memfd,id=mem,size="+strconv.Itoa(s.MemoryMiB)+"M,share=on",
			"-chardev", "socket,id=vfs,path="+s.VirtioFSSocket(),
		)
	}
	switch {
	case s.Tap != "":
		args = append(args, "-netdev", "tap,id=net0,ifname="+s.Tap+",script=no,downscript=no")
	case s.hasNIC():
		args = append(args, "-netdev", "hubport,id=net0,hubid=0")
	}
	if s.Incoming {
		args = append(args, "-incoming", "defer")
	}
	// Without ACPI each virtio device is on the transport the guest's
	// command line gives it; with ACPI QEMU places them (from the last
	// transport down) and the DSDT tells the guest.
	for i, d := range virtioDevices(s) {
		if s.CmdlineDevices {
			d += ",bus=virtio-mmio-bus." + strconv.Itoa(i)
		}
		args = append(args, "-device", d)
	}
	args = append(args, "-device", "virtserialport,chardev=agent,name="+api.PortName)
	if s.ConsoleLog != "" {
		args = append(args, "-serial", "file:"+s.ConsoleLog)
	}
	return args
}

// Accel is the acceleration a VM runs with, and why.
type Accel struct {
	Mode   string // config.AccelKVM or config.AccelTCG
	Reason string
}

// ResolveAccel turns the configured accel into the one to use. auto picks
// KVM only when devKVM really runs a guest (ProbeKVM) and is not
// PVM (/sys/module/kvm_pvm): PVM runs preflight's tiny guest but does not
// boot stock kernels. A real probe boot of the kernel would settle it for
// other odd KVMs, at seconds per kernel: left for when one is met.
func ResolveAccel(requested, devKVM, sysRoot string) Accel {
	switch requested {
	case config.AccelKVM:
		return Accel{config.AccelKVM, "configured"}
	case config.AccelTCG:
		return Accel{config.AccelTCG, "configured"}
	}
	if err := ProbeKVM(devKVM); err != nil {
		return Accel{config.AccelTCG, fmt.Sprintf("%s cannot run a guest: %v", devKVM, err)}
	}
	if _, err := os.Stat(filepath.Join(sysRoot, "module/kvm_pvm")); err == nil {
		return Accel{config.AccelTCG, devKVM + " is PVM (kvm_pvm), which does not boot stock kernels"}
	}
	return Accel{config.AccelKVM, devKVM + " runs guests"}
}
