package oci

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/cradle-runtime/cradle/pkg/sandbox/ctrconfig"
	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func u64p(v uint64) *uint64 { return &v }

func TestUpdateResources(t *testing.T) {
	v1 := Host{SwapAccounting: true}
	v2 := Host{CgroupV2: true, SwapAccounting: true}
	// This project's CI host: v1 controllers, hugetlb only in the cgroup2
	// tree beside them, 2 MB pages.
	hybrid := Host{SwapAccounting: true, HugePageSizes: []string{"2MB"},
		Controllers: map[string]bool{"cpu": true, "cpuacct": true, "cpuset": true, "memory": true, "pids": true}}
	v2NoHugetlb := Host{CgroupV2: true, HugePageSizes: []string{"2MB", "1GB"}, Controllers: map[string]bool{"cpu": true, "memory": true}}
	v2Hugetlb := Host{CgroupV2: true, HugePageSizes: []string{"2MB"}, Controllers: map[string]bool{"cpu": true, "memory": true, "hugetlb": true}}
	kubeletDefaults := []ctrconfig.HugepageLimit{{PageSize: "2MB"}, {PageSize: "1GB"}}
	tests := []struct {
		name    string
		current specs.LinuxResources
		cri     *ctrconfig.Resources
		host    Host
		want    specs.LinuxResources
		dropped int
		wantErr error
	}{
		{
			name:    "kubelet's zero hugepage limits on a host whose v1 controllers lack hugetlb are dropped",
			cri:     &ctrconfig.Resources{CPUShares: 2, MemoryLimit: 1 << 30, HugepageLimits: kubeletDefaults},
			host:    hybrid,
			want:    specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: u64p(2)}, Memory: &specs.LinuxMemory{Limit: i64p(1 << 30), Swap: i64p(1 << 30)}},
			dropped: 2,
		},
		{name: "an explicit hugepage limit the host cannot enforce", cri: &ctrconfig.Resources{HugepageLimits: []ctrconfig.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}}}, host: hybrid, wantErr: errdefs.ErrInvalidArgument},
		{name: "v2 without hugetlb delegated", cri: &ctrconfig.Resources{HugepageLimits: kubeletDefaults}, host: v2NoHugetlb, want: specs.LinuxResources{}, dropped: 2},
		{
			name:    "v2 with hugetlb: the page sizes the kernel has are kept",
			cri:     &ctrconfig.Resources{HugepageLimits: []ctrconfig.HugepageLimit{{PageSize: "2MB", Limit: 2 << 20}, {PageSize: "1GB"}}},
			host:    v2Hugetlb,
			want:    specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 2 << 20}}},
			dropped: 1,
		},
		{name: "explicit limit of a page size the kernel lacks", cri: &ctrconfig.Resources{HugepageLimits: []ctrconfig.HugepageLimit{{PageSize: "1GB", Limit: 1 << 30}}}, host: v2Hugetlb, wantErr: errdefs.ErrInvalidArgument},
		{name: "memory limit without a memory controller", cri: &ctrconfig.Resources{MemoryLimit: 1 << 30}, host: Host{Controllers: map[string]bool{"cpu": true}}, wantErr: errdefs.ErrInvalidArgument},
		{name: "cpuset without a cpuset controller", cri: &ctrconfig.Resources{CpusetCPUs: "0"}, host: v2Hugetlb, wantErr: errdefs.ErrInvalidArgument},
		{name: "unified key of a controller not delegated", cri: &ctrconfig.Resources{Unified: map[string]string{"io.max": "8:0 rbps=1"}}, host: v2Hugetlb, wantErr: errdefs.ErrInvalidArgument},
		{name: "unified memory key with a memory controller", cri: &ctrconfig.Resources{Unified: map[string]string{"memory.high": "1000000"}}, host: v2Hugetlb, want: specs.LinuxResources{Unified: map[string]string{"memory.high": "1000000"}}},
		{name: "cpu shares without a cpu controller", cri: &ctrconfig.Resources{CPUShares: 2, CPUPeriod: 100000}, host: Host{Controllers: map[string]bool{"memory": true}}, want: specs.LinuxResources{}, dropped: 1},
		{name: "kubelet's swap = memory without swap accounting", cri: &ctrconfig.Resources{MemoryLimit: 1 << 30, MemorySwapLimit: 1 << 30}, want: specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64p(1 << 30)}}, dropped: 1},
		{name: "a swap allowance without swap accounting", cri: &ctrconfig.Resources{MemoryLimit: 1 << 30, MemorySwapLimit: 2 << 30}, wantErr: errdefs.ErrInvalidArgument},
		{name: "cpu quota without a cpu controller", cri: &ctrconfig.Resources{CPUQuota: 5000}, host: Host{Controllers: map[string]bool{"memory": true}}, wantErr: errdefs.ErrInvalidArgument},
		{name: "nil", want: specs.LinuxResources{}},
		{
			name: "cpu and memory, swap = limit",
			cri:  &ctrconfig.Resources{CPUPeriod: 100000, CPUQuota: 50000, CPUShares: 512, CpusetCPUs: "0-1", CpusetMems: "0", MemoryLimit: 1 << 30},
			host: v1,
			want: specs.LinuxResources{
				CPU:    &specs.LinuxCPU{Period: u64p(100000), Quota: i64p(50000), Shares: u64p(512), Cpus: "0-1", Mems: "0"},
				Memory: &specs.LinuxMemory{Limit: i64p(1 << 30), Swap: i64p(1 << 30)},
			},
		},
		{
			name: "no swap accounting",
			cri:  &ctrconfig.Resources{MemoryLimit: 1 << 30},
			want: specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64p(1 << 30)}},
		},
		{
			name: "explicit swap",
			cri:  &ctrconfig.Resources{MemoryLimit: 1 << 30, MemorySwapLimit: 2 << 30},
			host: v1,
			want: specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64p(1 << 30), Swap: i64p(2 << 30)}},
		},
		{
			name: "unified swap on v2",
			cri:  &ctrconfig.Resources{MemoryLimit: 1 << 30, Unified: map[string]string{"memory.swap.max": "max"}},
			host: v2,
			want: specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64p(1 << 30)}, Unified: map[string]string{"memory.swap.max": "max"}},
		},
		{
			name:    "update keeps what is not given and merges unified",
			current: specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: u64p(2), Cpus: "0"}, Pids: &specs.LinuxPids{Limit: i64p(10)}, Unified: map[string]string{"a": "1"}, HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1}}},
			cri:     &ctrconfig.Resources{CPUShares: 1024, Unified: map[string]string{"b": "2"}, HugepageLimits: []ctrconfig.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}, {PageSize: "1GB", Limit: 1 << 30}}},
			host:    v2,
			want: specs.LinuxResources{
				CPU: &specs.LinuxCPU{Shares: u64p(1024), Cpus: "0"}, Pids: &specs.LinuxPids{Limit: i64p(10)},
				Unified:        map[string]string{"a": "1", "b": "2"},
				HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 << 20}, {Pagesize: "1GB", Limit: 1 << 30}},
			},
		},
		{name: "unified on v1", cri: &ctrconfig.Resources{Unified: map[string]string{"memory.high": "1"}}, host: v1, wantErr: errdefs.ErrInvalidArgument},
		{
			name: "quota -1 is unlimited (kubelet, exclusive CPUs)",
			cri:  &ctrconfig.Resources{CPUPeriod: 100000, CPUQuota: -1},
			want: specs.LinuxResources{CPU: &specs.LinuxCPU{Period: u64p(100000), Quota: i64p(-1)}},
		},
		{name: "quota -5", cri: &ctrconfig.Resources{CPUQuota: -5}, wantErr: errdefs.ErrInvalidArgument},
		{name: "quota below 1ms", cri: &ctrconfig.Resources{CPUQuota: 999}, wantErr: errdefs.ErrInvalidArgument},
		{name: "period below 1ms", cri: &ctrconfig.Resources{CPUPeriod: 999}, wantErr: errdefs.ErrInvalidArgument},
		{name: "period above 1s", cri: &ctrconfig.Resources{CPUPeriod: 1000001}, wantErr: errdefs.ErrInvalidArgument},
		{name: "negative shares", cri: &ctrconfig.Resources{CPUShares: -1}, wantErr: errdefs.ErrInvalidArgument},
		{name: "negative memory", cri: &ctrconfig.Resources{MemoryLimit: -1}, wantErr: errdefs.ErrInvalidArgument},
		{name: "hugepage without size", cri: &ctrconfig.Resources{HugepageLimits: []ctrconfig.HugepageLimit{{Limit: 1}}}, wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.current
			dropped, err := UpdateResources(&got, tt.cri, tt.host)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if len(dropped) != tt.dropped {
				t.Errorf("dropped = %q, want %d", dropped, tt.dropped)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("resources (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := UpdateResources(nil, &ctrconfig.Resources{}, v1); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("nil resources: err = %v, want InvalidArgument", err)
	}
}

func TestOOMScoreAdj(t *testing.T) {
	tests := []struct {
		want    int64
		floor   int
		got     int
		warns   bool
		wantErr error
	}{
		{want: 1000, floor: -1000, got: 1000},
		{want: -999, floor: -1000, got: -999},
		{want: -997, floor: -500, got: -500, warns: true},
		{want: 100, floor: 0, got: 100},
		{want: -1, floor: 0, got: 0, warns: true},
		{want: 1001, wantErr: errdefs.ErrInvalidArgument},
		{want: -1001, floor: -1000, wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		got, warning, err := oomScoreAdj(tt.want, tt.floor)
		if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
			t.Errorf("oomScoreAdj(%d, %d): err = %v, want %v", tt.want, tt.floor, err, tt.wantErr)
			continue
		}
		if got != tt.got || (warning != "") != tt.warns {
			t.Errorf("oomScoreAdj(%d, %d) = %d, %q; want %d, warning %v", tt.want, tt.floor, got, warning, tt.got, tt.warns)
		}
	}
}
