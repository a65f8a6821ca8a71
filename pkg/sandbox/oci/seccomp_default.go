package oci

import (
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The RuntimeDefault seccomp profile: the allow-list the container
// ecosystem (Docker, containerd, CRI-O) ships, as data. Anything not listed
// fails with EPERM. Syscalls that need a capability are allowed only when
// the container has it; clone may not create namespaces without
// CAP_SYS_ADMIN; clone3, whose flags seccomp cannot read, fails with ENOSYS
// so that libcs fall back to clone.

// allowedSyscalls are allowed unconditionally, grouped by what they touch.
// Names unknown to an architecture are ignored by the OCI runtime.
const allowedSyscalls = `
	access faccessat faccessat2 chdir fchdir getcwd chmod fchmod fchmodat fchmodat2
	chown chown32 fchown fchown32 fchownat lchown lchown32 creat open openat openat2
	close close_range dup dup2 dup3 link linkat symlink symlinkat unlink unlinkat
	rename renameat renameat2 mkdir mkdirat mknod mknodat rmdir readlink readlinkat
	stat stat64 fstat fstat64 fstatat64 newfstatat lstat lstat64 statx statfs statfs64
	fstatfs fstatfs64 truncate truncate64 ftruncate ftruncate64 fallocate flock
	fcntl fcntl64 getdents getdents64 umask utime utimes utimensat utimensat_time64
	futimesat name_to_handle_at fanotify_mark inotify_add_watch inotify_init
	inotify_init1 inotify_rm_watch sync syncfs fsync fdatasync sync_file_range
	cachestat statmount listmount

	getxattr fgetxattr lgetxattr getxattrat setxattr fsetxattr lsetxattr setxattrat
	listxattr flistxattr llistxattr listxattrat removexattr fremovexattr
	lremovexattr removexattrat

	read readv pread64 preadv preadv2 write writev pwrite64 pwritev pwritev2
	lseek _llseek sendfile sendfile64 splice tee vmsplice copy_file_range readahead
	fadvise64 fadvise64_64 ioctl pipe pipe2 eventfd eventfd2 signalfd signalfd4
	select _newselect pselect6 pselect6_time64 poll ppoll ppoll_time64
	epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_wait epoll_wait_old
	epoll_pwait epoll_pwait2 io_setup io_destroy io_submit io_cancel io_getevents
	io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set

	brk mmap mmap2 munmap mremap mprotect madvise mincore msync mlock mlock2
	mlockall munlock munlockall remap_file_pages membarrier memfd_create
	memfd_secret pkey_alloc pkey_free pkey_mprotect map_shadow_stack mseal

	execve execveat fork vfork exit exit_group wait4 waitid waitpid kill tkill
	tgkill pidfd_open pidfd_send_signal process_mrelease prctl
	getpid getppid gettid getpgid setpgid getpgrp getsid setsid getpriority
	setpriority getrlimit setrlimit ugetrlimit prlimit64 getrusage
	set_tid_address set_robust_list get_robust_list set_thread_area
	get_thread_area rseq restart_syscall seccomp capget capset getcpu
	futex futex_time64 futex_waitv futex_wait futex_wake futex_requeue
	landlock_add_rule landlock_create_ruleset landlock_restrict_self
	lsm_get_self_attr lsm_set_self_attr lsm_list_modules uretprobe
	ptrace process_vm_readv process_vm_writev

	getuid getuid32 geteuid geteuid32 getgid getgid32 getegid getegid32
	getresuid getresuid32 getresgid getresgid32 getgroups getgroups32
	setuid setuid32 setgid setgid32 setreuid setreuid32 setregid setregid32
	setresuid setresuid32 setresgid setresgid32 setfsuid setfsuid32 setfsgid
	setfsgid32 setgroups setgroups32

	rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn
	rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo
	sigaltstack sigprocmask sigreturn pause

	time gettimeofday clock_gettime clock_gettime64 clock_getres
	clock_getres_time64 clock_nanosleep clock_nanosleep_time64 clock_adjtime
	clock_adjtime64 adjtimex nanosleep alarm getitimer setitimer times
	timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64
	timer_settime timer_settime64 timerfd_create timerfd_gettime
	timerfd_gettime64 timerfd_settime timerfd_settime64

	sched_yield sched_getaffinity sched_setaffinity sched_getattr sched_setattr
	sched_getparam sched_setparam sched_getscheduler sched_setscheduler
	sched_get_priority_max sched_get_priority_min sched_rr_get_interval
	sched_rr_get_interval_time64

	ipc msgctl msgget msgrcv msgsnd semctl semget semop semtimedop
	semtimedop_time64 shmat shmctl shmdt shmget mq_getsetattr mq_notify mq_open
	mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64
	mq_unlink

	accept accept4 bind connect listen shutdown getpeername getsockname
	getsockopt setsockopt socketpair socketcall send sendto sendmsg sendmmsg
	recv recvfrom recvmsg recvmmsg recvmmsg_time64

	uname sysinfo getrandom
`

// archSyscalls are allowed on one architecture only.
func archSyscalls(arch string) []string {
	switch arch {
	case "amd64":
		return []string{"arch_prctl", "modify_ldt"}
	case "arm64":
		return []string{"arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"}
	case "ppc64le":
		return []string{"sync_file_range2", "swapcontext"}
	case "s390x":
		return []string{"s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"}
	case "riscv64":
		return []string{"riscv_flush_icache", "riscv_hwprobe"}
	}
	return nil
}

// seccompArches are the ABIs a process on arch can call the kernel with.
func seccompArches(arch string) []specs.Arch {
	switch arch {
	case "amd64":
		return []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}
	case "arm64":
		return []specs.Arch{specs.ArchARM, specs.ArchAARCH64}
	case "ppc64le":
		return []specs.Arch{specs.ArchPPC64LE}
	case "s390x":
		return []specs.Arch{specs.ArchS390, specs.ArchS390X}
	case "riscv64":
		return []specs.Arch{specs.ArchRISCV64}
	}
	return nil
}

// capSyscalls are allowed when the container holds the capability.
func capSyscalls(capability string) []string {
	switch capability {
	case "CAP_DAC_READ_SEARCH":
		return []string{"open_by_handle_at"}
	case "CAP_SYS_ADMIN":
		return []string{
			"bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen",
			"fspick", "lookup_dcookie", "mount", "mount_setattr", "move_mount",
			"open_tree", "perf_event_open", "quotactl", "quotactl_fd", "setdomainname",
			"sethostname", "setns", "syslog", "umount", "umount2", "unshare",
		}
	case "CAP_SYS_BOOT":
		return []string{"reboot"}
	case "CAP_SYS_CHROOT":
		return []string{"chroot"}
	case "CAP_SYS_MODULE":
		return []string{"delete_module", "init_module", "finit_module"}
	case "CAP_SYS_PACCT":
		return []string{"acct"}
	case "CAP_SYS_PTRACE":
		return []string{"kcmp", "pidfd_getfd", "process_madvise"}
	case "CAP_SYS_RAWIO":
		return []string{"iopl", "ioperm"}
	case "CAP_SYS_TIME":
		return []string{"settimeofday", "stime", "clock_settime", "clock_settime64"}
	case "CAP_SYS_TTY_CONFIG":
		return []string{"vhangup"}
	case "CAP_SYS_NICE":
		return []string{"get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"}
	case "CAP_SYSLOG":
		return []string{"syslog"}
	case "CAP_BPF":
		return []string{"bpf"}
	case "CAP_PERFMON":
		return []string{"perf_event_open"}
	}
	return nil
}

// Linux ABI constants the profile filters on; the same on every arch.
const (
	afALG        = 38 // kernel crypto API: no container needs it
	afNFC        = 39
	afVSOCK      = 40 // reaches other VMs' vsock CIDs: blocked
	afMCTP       = 45 // highest family allowed
	errnoENOSYS  = 38
	cloneNSFlags = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
)

// DefaultSeccompProfile is the RuntimeDefault profile for a container on
// arch (GOARCH) holding caps in its bounding set.
func DefaultSeccompProfile(arch string, caps []string) *specs.LinuxSeccomp {
	names := slices.Concat(strings.Fields(allowedSyscalls), archSyscalls(arch))
	var adminNames []string
	for _, c := range caps {
		adminNames = append(adminNames, capSyscalls(c)...)
	}
	names = dedupe(append(names, adminNames...))
	syscalls := []specs.LinuxSyscall{{Names: names, Action: specs.ActAllow}}
	syscalls = append(syscalls, socketRules()...)
	syscalls = append(syscalls, personalityRules()...)
	if !slices.Contains(caps, "CAP_SYS_ADMIN") {
		syscalls = append(syscalls, cloneRules(arch)...)
	}
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Architectures: seccompArches(arch),
		Syscalls:      syscalls,
	}
}

// socketRules allow socket(2) for every family up to AF_MCTP but AF_ALG and
// AF_VSOCK. runc ORs comparisons on one argument, so the allowed families
// are a one-sided range below AF_ALG plus single values above it.
func socketRules() []specs.LinuxSyscall {
	rule := func(op specs.LinuxSeccompOperator, v uint64) specs.LinuxSyscall {
		return specs.LinuxSyscall{
			Names:  []string{"socket"},
			Action: specs.ActAllow,
			Args:   []specs.LinuxSeccompArg{{Index: 0, Value: v, Op: op}},
		}
	}
	rules := []specs.LinuxSyscall{rule(specs.OpLessThan, afALG)}
	for family := uint64(afNFC); family <= afMCTP; family++ {
		if family != afVSOCK {
			rules = append(rules, rule(specs.OpEqualTo, family))
		}
	}
	return rules
}

// personalityRules allow the personalities programs use: PER_LINUX,
// UNAME26, ADDR_NO_RANDOMIZE (and with PER_LINUX32) and the query value.
func personalityRules() []specs.LinuxSyscall {
	var rules []specs.LinuxSyscall
	for _, v := range []uint64{0x0, 0x0008, 0x20000, 0x20008, 0xffffffff} {
		rules = append(rules, specs.LinuxSyscall{
			Names:  []string{"personality"},
			Action: specs.ActAllow,
			Args:   []specs.LinuxSeccompArg{{Index: 0, Value: v, Op: specs.OpEqualTo}},
		})
	}
	return rules
}

// cloneRules let clone run only without namespace flags and make clone3
// fail with ENOSYS.
func cloneRules(arch string) []specs.LinuxSyscall {
	flagsArg := uint(0)
	if arch == "s390x" {
		flagsArg = 1 // s390 swaps clone's first two arguments
	}
	enosys := uint(errnoENOSYS)
	return []specs.LinuxSyscall{
		{
			Names:  []string{"clone"},
			Action: specs.ActAllow,
			Args:   []specs.LinuxSeccompArg{{Index: flagsArg, Value: cloneNSFlags, ValueTwo: 0, Op: specs.OpMaskedEqual}},
		},
		{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys},
	}
}
