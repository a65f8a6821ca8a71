package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// recordVersion is the version of the per-pod record format.
const recordVersion = 1

// record is what Setup persists about a pod BEFORE it creates anything, so
// that Teardown can work from it alone, after a crash, in a daemon that
// has no other memory of the pod. It is rewritten (complete=true, IPs
// filled in) when Setup succeeds.
type record struct {
	Version      int           `json:"version"`
	PodID        string        `json:"pod_id"`
	Name         string        `json:"name,omitempty"`
	Namespace    string        `json:"namespace,omitempty"`
	Mode         string        `json:"mode"`
	HostNetwork  bool          `json:"host_network,omitempty"`
	NetNSPath    string        `json:"netns,omitempty"`
	Veth         string        `json:"veth,omitempty"`
	PortMappings []PortMapping `json:"port_mappings,omitempty"`
	// IPs are the leased (builtin) or CNI-assigned addresses, as strings.
	IPs      []string `json:"ips,omitempty"`
	Gateway  string   `json:"gateway,omitempty"`
	MTU      int      `json:"mtu,omitempty"`
	Complete bool     `json:"complete"`
	// CNIConfList is the configuration list ADD ran with, so DEL runs with
	// the same one even after the conf dir changed.
	CNIConfList json.RawMessage `json:"cni_conflist,omitempty"`
}

// records stores one JSON file per pod under dir.
type records struct{ dir string }

func (s records) path(podID string) string { return filepath.Join(s.dir, podID+".json") }

// save writes r atomically: temp file, fsync, rename, fsync of the directory.
func (s records) save(r *record) error {
	r.Version = recordVersion
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode network record: %w", err)
	}
	if err := writeFileSync(s.path(r.PodID), b); err != nil {
		return fmt.Errorf("persist network record of pod %s: %w", r.PodID, err)
	}
	return nil
}

// load returns the record of podID, or (nil, nil) when there is none.
func (s records) load(podID string) (*record, error) {
	b, err := os.ReadFile(s.path(podID))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read network record of pod %s: %w", podID, err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode network record of pod %s: %w", podID, err)
	}
	if r.Version != recordVersion {
		return nil, fmt.Errorf("network record of pod %s: unsupported version %d", podID, r.Version)
	}
	return &r, nil
}

func (s records) remove(podID string) error {
	if err := os.Remove(s.path(podID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove network record of pod %s: %w", podID, err)
	}
	return syncDir(s.dir)
}

// list returns the pod IDs that have a record.
func (s records) list() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list network records: %w", err)
	}
	var ids []string
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && validID(id) == nil {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func writeFileSync(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// anyMode says whether a pod on the network of mode has a record.
func (s records) anyMode(mode string) bool {
	ids, _ := s.list()
	for _, id := range ids {
		if r, err := s.load(id); err == nil && r != nil && !r.HostNetwork && r.Mode == mode {
			return true
		}
	}
	return false
}
