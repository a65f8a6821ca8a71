package preflight

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/cradle-runtime/cradle/pkg/config"
	"github.com/cradle-runtime/cradle/pkg/network"
	"github.com/cradle-runtime/cradle/pkg/sandbox/vmbox"
)

func checkMicroVM(ctx context.Context, f Facts) []Result {
	var out []Result
	if path, err := exec.LookPath(f.QEMU); err != nil {
		out = append(out, warn("qemu", f.QEMU+" not found: microVM pods cannot run", "apt-get install qemu-system-x86"))
	} else {
		out = append(out, ok("qemu", commandLine(ctx, path, "--version")+" at "+path))
	}
	var kernels []string
	for _, g := range f.GuestKernels {
		m, _ := filepath.Glob(g)
		kernels = append(kernels, m...)
	}
	if len(kernels) == 0 {
		out = append(out, warn("guest kernel", "none found: microVM pods cannot boot", "apt-get install linux-image-amd64"))
	} else {
		out = append(out, ok("guest kernel", strings.Join(kernels, " ")))
	}
	return append(out, checkKVM(f))
}

func checkKVM(f Facts) Result {
	if _, err := os.Stat(f.DevKVM); err != nil {
		return warn("kvm", f.DevKVM+" absent: microVMs run under TCG (software emulation, slow)", "enable virtualisation (or nested virtualisation) for this machine")
	}
	pvm := false
	if _, err := os.Stat(filepath.Join(f.SysRoot, "module/kvm_pvm")); err == nil {
		pvm = true
	}
	if err := vmbox.ProbeKVM(f.DevKVM); err != nil {
		return warn("kvm", f.DevKVM+" exists but cannot run a guest ("+err.Error()+"): microVMs run under TCG",
			"check permissions and that the host exposes hardware virtualisation")
	}
	if pvm {
		return warn("kvm", f.DevKVM+" runs a minimal guest, but it is PVM (kvm_pvm), which does not boot stock kernels: microVMs run under TCG",
			"a host with VMX/SVM virtualisation (or nested VMX) for KVM-accelerated microVMs")
	}
	return ok("kvm", f.DevKVM+" runs guests: microVMs can use KVM")
}

func checkNetwork(ctx context.Context, f Facts) []Result {
	var out []Result
	mods, _ := os.ReadFile(filepath.Join(f.ProcRoot, "modules"))
	if _, err := os.Stat(filepath.Join(f.SysRoot, "module/bridge")); err == nil || strings.Contains(string(mods), "bridge ") {
		out = append(out, ok("bridge", "kernel bridge support loaded"))
	} else {
		out = append(out, warn("bridge", "bridge module not loaded", "modprobe bridge (cradle loads it on first use where it can)"))
	}
	out = append(out, checkNftables(ctx, f))
	// CNI's portmap and firewall plugins use iptables; the built-in network does not.
	if path, err := exec.LookPath("iptables"); err != nil {
		out = append(out, warn("iptables", "not found", "apt-get install iptables"))
	} else {
		out = append(out, ok("iptables", commandLine(ctx, path, "--version")))
	}
	return out
}

// checkNftables writes the built-in network's rules in a throwaway network
// namespace (network.ProbeNftables): the kernel's nf_tables with NAT, fib
// and ct, not just a binary. The nft command itself is optional.
func checkNftables(ctx context.Context, f Facts) Result {
	nft := "the nft command is not installed (optional: apt-get install nftables to look at the rules)"
	if path, err := exec.LookPath("nft"); err == nil {
		nft = commandLine(ctx, path, "--version")
	}
	if err := network.ProbeNftables(); err != nil {
		detail := "the kernel refuses the built-in network's rules: " + err.Error()
		fix := "a kernel with nf_tables and its NAT, masquerade, fib and conntrack expressions (modprobe nf_tables nft_chain_nat nft_masq nft_fib_inet)"
		if f.Network.Mode == config.NetworkBuiltin || f.Network.Mode == config.NetworkAuto && !network.HasCNIConfig(f.Network.CNIConfDir) {
			return fail("nftables", detail+": the built-in network cannot run", fix)
		}
		return warn("nftables", detail+" (not needed in "+f.Network.Mode+" mode)", fix)
	}
	return ok("nftables", "the kernel holds the built-in network's rules (NAT, masquerade, hostPort DNAT); "+nft)
}

func checkPrivileges(_ context.Context, f Facts) []Result {
	var out []Result
	if os.Geteuid() != 0 {
		out = append(out, fail("root", "not running as root", "run cradle as root (it mounts, makes namespaces and cgroups)"))
	}
	capBnd := procStatusField(filepath.Join(f.ProcRoot, "self/status"), "CapBnd")
	if v, err := strconv.ParseUint(capBnd, 16, 64); err == nil && v&(1<<24) == 0 {
		out = append(out, warn("CAP_SYS_RESOURCE", "missing from the bounding set: a negative oom_score_adj cannot be set",
			"run cradle with CAP_SYS_RESOURCE to let kubelet protect critical pods from the OOM killer"))
	} else {
		out = append(out, ok("CAP_SYS_RESOURCE", "present"))
	}
	if rootShared(filepath.Join(f.ProcRoot, "self/mountinfo")) {
		out = append(out, ok("mount propagation", "/ is a shared mount"))
	} else {
		out = append(out, warn("mount propagation", "/ is not a shared mount (no systemd): Bidirectional and HostToContainer volumes need it",
			"mount --make-rshared / (systemd does this at boot)"))
	}
	return out
}

func procStatusField(path, key string) string {
	fh, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// rootShared reports whether "/" carries a shared: propagation tag.
func rootShared(mountinfo string) bool {
	fh, err := os.Open(mountinfo)
	if err != nil {
		return false
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 7 || fields[4] != "/" {
			continue
		}
		for _, opt := range fields[6:] {
			if opt == "-" {
				break
			}
			if strings.HasPrefix(opt, "shared:") {
				return true
			}
		}
	}
	return false
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
