package oci

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func u64p(v uint64) *uint64 { return &v }

func TestUpdateResources(t *testing.T) {
	v1 := Host{SwapAccounting: true}
	v2 := Host{CgroupV2: true, SwapAccounting: true}
	tests := []struct {
		name    string
		current specs.LinuxResources
		cri     *runtime.LinuxContainerResources
		host    Host
		want    specs.LinuxResources
		wantErr error
	}{
		{name: "nil", want: specs.LinuxResources{}},
		{
			name: "cpu and memory, swap = limit",
			cri:  &runtime.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, CpusetCpus: "0-1", CpusetMems: "0", MemoryLimitInBytes: 1 << 30},
			host: v1,
			want: specs.LinuxResources{
				CPU:    &specs.LinuxCPU{Period: u64p(100000), Quota: i64p(50000), Shares: u64p(512), Cpus: "0-1", Mems: "0"},
				Memory: &specs.LinuxMemory{Limit: i64p(1 << 30), Swap: i64p(1 << 30)},
			},
		},
		{
			name: "no swap accounting",
			cri:  &runtime.LinuxContainerResources{MemoryLimitInBytes: 1 << 30},
			want: specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64p(1 << 30)}},
		},
		{
			name: "explicit swap",
			cri:  &runtime.LinuxContainerResources{MemoryLimitInBytes: 1 << 30, MemorySwapLimitInBytes: 2 << 30},
			host: v1,
			want: specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64p(1 << 30), Swap: i64p(2 << 30)}},
		},
		{
			name: "unified swap on v2",
			cri:  &runtime.LinuxContainerResources{MemoryLimitInBytes: 1 << 30, Unified: map[string]string{"memory.swap.max": "max"}},
			host: v2,
			want: specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64p(1 << 30)}, Unified: map[string]string{"memory.swap.max": "max"}},
		},
		{
			name:    "update keeps what is not given and merges unified",
			current: specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: u64p(2), Cpus: "0"}, Pids: &specs.LinuxPids{Limit: i64p(10)}, Unified: map[string]string{"a": "1"}, HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1}}},
			cri:     &runtime.LinuxContainerResources{CpuShares: 1024, Unified: map[string]string{"b": "2"}, HugepageLimits: []*runtime.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}, {PageSize: "1GB", Limit: 1 << 30}}},
			host:    v2,
			want: specs.LinuxResources{
				CPU: &specs.LinuxCPU{Shares: u64p(1024), Cpus: "0"}, Pids: &specs.LinuxPids{Limit: i64p(10)},
				Unified:        map[string]string{"a": "1", "b": "2"},
				HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 << 20}, {Pagesize: "1GB", Limit: 1 << 30}},
			},
		},
		{name: "unified on v1", cri: &runtime.LinuxContainerResources{Unified: map[string]string{"memory.high": "1"}}, host: v1, wantErr: errdefs.ErrInvalidArgument},
		{
			name: "quota -1 is unlimited (kubelet, exclusive CPUs)",
			cri:  &runtime.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: -1},
			want: specs.LinuxResources{CPU: &specs.LinuxCPU{Period: u64p(100000), Quota: i64p(-1)}},
		},
		{name: "quota -5", cri: &runtime.LinuxContainerResources{CpuQuota: -5}, wantErr: errdefs.ErrInvalidArgument},
		{name: "quota below 1ms", cri: &runtime.LinuxContainerResources{CpuQuota: 999}, wantErr: errdefs.ErrInvalidArgument},
		{name: "period below 1ms", cri: &runtime.LinuxContainerResources{CpuPeriod: 999}, wantErr: errdefs.ErrInvalidArgument},
		{name: "period above 1s", cri: &runtime.LinuxContainerResources{CpuPeriod: 1000001}, wantErr: errdefs.ErrInvalidArgument},
		{name: "negative shares", cri: &runtime.LinuxContainerResources{CpuShares: -1}, wantErr: errdefs.ErrInvalidArgument},
		{name: "negative memory", cri: &runtime.LinuxContainerResources{MemoryLimitInBytes: -1}, wantErr: errdefs.ErrInvalidArgument},
		{name: "hugepage without size", cri: &runtime.LinuxContainerResources{HugepageLimits: []*runtime.HugepageLimit{{Limit: 1}}}, wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.current
			err := UpdateResources(&got, tt.cri, tt.host)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("resources (-want +got):\n%s", diff)
			}
		})
	}
	if err := UpdateResources(nil, &runtime.LinuxContainerResources{}, v1); !errors.Is(err, errdefs.ErrInvalidArgument) {
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
