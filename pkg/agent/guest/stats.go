package guest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
	"github.com/cradle-runtime/cradle/pkg/sandbox/cgroup"
)

// Stats reads the cgroups of the containers asked for (all when none is
// named; unknown or stopped ones are left out) and the guest's memory.
func (s *Service) Stats(_ context.Context, req *api.StatsRequest) (*api.StatsResponse, error) {
	cg, err := cgroup.New()
	if err != nil {
		return nil, fmt.Errorf("guest cgroups: %w", err)
	}
	s.mu.Lock()
	var cs []*container
	for id, c := range s.containers {
		if len(req.GetIds()) == 0 || contains(req.GetIds(), id) {
			cs = append(cs, c)
		}
	}
	s.mu.Unlock()
	resp := &api.StatsResponse{}
	for _, c := range cs {
		if c.cgroup == "" || exited(c) {
			continue
		}
		st, err := cg.Stats(c.cgroup)
		if err != nil {
			continue
		}
		b, err := json.Marshal(st)
		if err != nil {
			return nil, err
		}
		cst := &api.ContainerStats{Id: c.id, Cgroup: b}
		if pids, err := cg.Processes(c.cgroup); err == nil {
			cst.Processes = uint64(len(pids))
			cst.Threads, cst.FileDescriptors = threadsAndFDs(pids)
		}
		resp.Containers = append(resp.Containers, cst)
	}
	resp.MemoryTotalBytes, resp.MemoryAvailableBytes = meminfo()
	resp.CpuUsageNs = cpuUsage()
	return resp, nil
}

// userHZ is the unit of /proc/stat's times (USER_HZ, 100 on Linux).
const userHZ = 100

// cpuUsage is the guest's busy CPU time from /proc/stat's cpu line: every
// field but idle and iowait (guest time is already in user).
func cpuUsage() uint64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy uint64
	for i, v := range f[1:min(len(f), 9)] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseUint(v, 10, 64)
		busy += n
	}
	return busy * (1e9 / userHZ)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// threadsAndFDs sums num_threads and open descriptors over pids.
func threadsAndFDs(pids []int) (threads, fds uint64) {
	for _, pid := range pids {
		p := "/proc/" + strconv.Itoa(pid)
		if b, err := os.ReadFile(p + "/stat"); err == nil {
			if i := strings.LastIndexByte(string(b), ')'); i > 0 {
				f := strings.Fields(string(b)[i+1:])
				if len(f) > 17 {
					n, _ := strconv.ParseUint(f[17], 10, 64)
					threads += n
				}
			}
		}
		if es, err := os.ReadDir(p + "/fd"); err == nil {
			fds += uint64(len(es))
		}
	}
	return threads, fds
}

// meminfo reads MemTotal and MemAvailable, in bytes.
func meminfo() (total, avail uint64) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		v, _ := strconv.ParseUint(fs[1], 10, 64)
		switch fs[0] {
		case "MemTotal:":
			total = v << 10
		case "MemAvailable:":
			avail = v << 10
		}
	}
	return total, avail
}
