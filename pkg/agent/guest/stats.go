package guest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/cradle-runtime/cradle/pkg/agent/api"
	"github.com/cradle-runtime/cradle/pkg/cgroup"
)

// Stats reads the cgroups of the containers ids (all when empty) and the
// guest's memory and CPU time. A container without a cgroup path, or whose
// cgroup is gone, is listed without figures (as are all where the guest has
// no cgroups mounted).
func (r *Runtime) Stats(ids []string) (*api.StatsResponse, error) {
	cs, err := r.selected(ids)
	if err != nil {
		return nil, err
	}
	resp := &api.StatsResponse{}
	for _, c := range cs {
		st := &api.ContainerStats{Id: c.id}
		if c.cgroup != "" && r.cgroups != nil {
			if err := containerStats(r.cgroups, c.cgroup, st); err != nil {
				return nil, fmt.Errorf("stats of %s: %w", c.id, err)
			}
		}
		resp.Containers = append(resp.Containers, st)
	}
	if err := guestStats(resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// selected returns the containers ids, or all.
func (r *Runtime) selected(ids []string) ([]*container, error) {
	if len(ids) == 0 {
		return r.list(), nil
	}
	out := make([]*container, 0, len(ids))
	for _, id := range ids {
		c, err := r.get(id)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// containerStats fills st from the cgroup at p; a cgroup that is gone
// leaves it empty.
func containerStats(cg *cgroup.Manager, p string, st *api.ContainerStats) error {
	s, err := cg.Stats(p)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Cgroup, err = json.Marshal(s); err != nil {
		return err
	}
	pids, err := cg.Processes(p)
	if err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	for _, pid := range pids {
		threads, fds, ok := processCounts(pid)
		if !ok {
			continue // exited meanwhile
		}
		st.Processes++
		st.Threads += threads
		st.FileDescriptors += fds
	}
	return nil
}

// processCounts counts a process's threads and open fds from /proc.
func processCounts(pid int) (threads, fds uint64, ok bool) {
	dir := "/proc/" + strconv.Itoa(pid)
	t, err := countEntries(dir + "/task")
	if err != nil {
		return 0, 0, false
	}
	f, _ := countEntries(dir + "/fd")
	return t, f, true
}

func countEntries(dir string) (uint64, error) {
	d, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	var n uint64
	for {
		names, err := d.Readdirnames(256)
		n += uint64(len(names))
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// guestStats reads the guest's memory (/proc/meminfo) and its cumulative
// busy CPU time (/proc/stat).
func guestStats(resp *api.StatsResponse) error {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return err
	}
	defer f.Close()
	mem, err := parseMeminfo(f)
	if err != nil {
		return fmt.Errorf("read /proc/meminfo: %w", err)
	}
	resp.MemoryTotalBytes, resp.MemoryAvailableBytes = mem["MemTotal"], mem["MemAvailable"]
	s, err := os.Open("/proc/stat")
	if err != nil {
		return err
	}
	defer s.Close()
	if resp.CpuUsageNs, err = parseCPUTime(s); err != nil {
		return fmt.Errorf("read /proc/stat: %w", err)
	}
	return nil
}

// parseMeminfo returns /proc/meminfo's figures in bytes ("MemTotal:
// 2030000 kB").
func parseMeminfo(r io.Reader) (map[string]uint64, error) {
	out := map[string]uint64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			continue
		}
		if len(fields) > 1 && fields[1] == "kB" {
			v *= 1024
		}
		out[key] = v
	}
	return out, sc.Err()
}

// userHZ is the unit of /proc/stat's times (USER_HZ, 100 on Linux).
const userHZ = 100

// parseCPUTime sums the busy times of /proc/stat's "cpu" line (user, nice,
// system, irq, softirq, steal; guest time is inside user) in nanoseconds.
func parseCPUTime(r io.Reader) (uint64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 9 || fields[0] != "cpu" {
			continue
		}
		var ticks uint64
		for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
			v, err := strconv.ParseUint(fields[i], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("cpu line %q: %w", sc.Text(), err)
			}
			ticks += v
		}
		return ticks * (1e9 / userHZ), nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no cpu line")
}
