package guest

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"
)

func TestParseLogErrors(t *testing.T) {
	tests := []struct {
		name, log, want string
	}{
		{"one error", `{"msg":"executable file ` + "`nosuch`" + ` not found","level":"error","time":"2026-01-01T00:00:00Z"}` + "\n",
			"executable file `nosuch` not found"},
		{"warnings are not errors", `{"msg":"w","level":"warning","time":"x"}{"msg":"e1","level":"error","time":"x"}` + "\n" +
			`{"msg":"e2","level":"error","time":"x"}`, "e1; e2"},
		{"empty", "", ""},
		{"not JSON", "plain text\n", "plain text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseLogErrors([]byte(tt.log)); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCrunArgv(t *testing.T) {
	c := crun{binary: "/usr/bin/crun", root: "/run/crun"}
	tests := []struct {
		log, cmd string
		args     []string
		want     string
	}{
		{"", "kill", []string{"--all", "c1", "9"}, "/usr/bin/crun --root /run/crun kill --all c1 9"},
		{"/b/crun.log", "create", []string{"--bundle", "/b", "c1"},
			"/usr/bin/crun --root /run/crun --log=file:/b/crun.log --log-format=json create --bundle /b c1"},
	}
	for _, tt := range tests {
		if got := strings.Join(c.argv(tt.log, tt.cmd, tt.args...), " "); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
}

func TestSysctlPath(t *testing.T) {
	tests := []struct {
		key, want string
		bad       bool
	}{
		{key: "net.ipv4.ip_forward", want: "/proc/sys/net/ipv4/ip_forward"},
		{key: "kernel.shmmax", want: "/proc/sys/kernel/shmmax"},
		{key: "net/core/somaxconn", want: "/proc/sys/net/core/somaxconn"},
		{key: "", bad: true},
		{key: "../../etc/passwd", bad: true},
		{key: "net/../../../etc", bad: true},
	}
	for _, tt := range tests {
		got, err := sysctlPath(tt.key)
		if tt.bad {
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("%q: err = %v, want InvalidArgument", tt.key, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q = %q, %v; want %q", tt.key, got, err, tt.want)
		}
	}
}

func TestParseProcFiles(t *testing.T) {
	mem, err := parseMeminfo(strings.NewReader("MemTotal:        2030000 kB\nMemFree:  10 kB\nMemAvailable:    1000000 kB\nHugePages_Total:       0\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"MemTotal": 2030000 << 10, "MemFree": 10 << 10, "MemAvailable": 1000000 << 10, "HugePages_Total": 0}
	if diff := cmp.Diff(want, mem); diff != "" {
		t.Error(diff)
	}
	// user nice system idle iowait irq softirq steal guest guest_nice
	ns, err := parseCPUTime(strings.NewReader("cpu  100 2 30 5000 7 1 4 3 50 0\ncpu0 50 1 15 2500 3 0 2 1 25 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(100+2+30+1+4+3) * 10_000_000; ns != want {
		t.Errorf("cpu = %d ns, want %d", ns, want)
	}
	if _, err := parseCPUTime(strings.NewReader("intr 1 2 3\n")); err == nil {
		t.Error("no cpu line: no error")
	}
}
