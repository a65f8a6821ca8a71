package kubelet

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// The kubelet API: the read-only port for /pods, /stats/summary and the
// metrics, the authenticated one (anonymous, AlwaysAllow) for /run and
// /containerLogs.
var (
	plainClient  = &http.Client{Timeout: 20 * time.Second}
	secureClient = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // kubelet's self-signed loopback certificate
)

func get(c *http.Client, u string) ([]byte, error) {
	resp, err := c.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	return b, nil
}

func readOnly(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", readOnlyPort, path) }
func secure(path string) string   { return fmt.Sprintf("https://127.0.0.1:%d%s", securePort, path) }

// pods returns kubelet's pods by name (static pods are named <name>-<node>).
func pods() (map[string]*corev1.Pod, error) {
	b, err := get(plainClient, readOnly("/pods"))
	if err != nil {
		return nil, err
	}
	var l corev1.PodList
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("decode /pods: %w", err)
	}
	out := map[string]*corev1.Pod{}
	for i := range l.Items {
		p := &l.Items[i]
		out[strings.TrimSuffix(p.Name, "-"+nodeName)] = p
	}
	return out, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func containerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for _, l := range [][]corev1.ContainerStatus{p.Status.ContainerStatuses, p.Status.InitContainerStatuses} {
		for i := range l {
			if l[i].Name == name {
				return &l[i]
			}
		}
	}
	return nil
}

// kubeRun runs cmd in a container through kubelet's /run (kubelet calls
// the runtime's ExecSync).
func kubeRun(pod, container string, cmd ...string) (string, error) {
	// kubelet splits /run's one cmd parameter at spaces.
	q := url.Values{"cmd": {strings.Join(cmd, " ")}}
	u := secure(fmt.Sprintf("/run/default/%s-%s/%s?%s", pod, nodeName, container, q.Encode()))
	resp, err := secureClient.Post(u, "", nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("run %v in %s/%s: %s: %s", cmd, pod, container, resp.Status, b)
	}
	return string(b), nil
}

// kubeLogs reads a container's log through kubelet (/containerLogs).
func kubeLogs(pod, container string, tail int) (string, error) {
	b, err := get(secureClient, secure(fmt.Sprintf("/containerLogs/default/%s-%s/%s?tailLines=%d", pod, nodeName, container, tail)))
	return string(b), err
}

// summary is the part of kubelet's /stats/summary the test reads.
type summary struct {
	Node struct {
		Runtime *struct {
			ImageFs *fsStats `json:"imageFs"`
		} `json:"runtime"`
	} `json:"node"`
	Pods []podStats `json:"pods"`
}

type podStats struct {
	PodRef struct {
		Name string `json:"name"`
	} `json:"podRef"`
	CPU        *cpuStats        `json:"cpu"`
	Memory     *memStats        `json:"memory"`
	Network    *netStats        `json:"network"`
	Containers []containerStats `json:"containers"`
}

type containerStats struct {
	Name   string    `json:"name"`
	CPU    *cpuStats `json:"cpu"`
	Memory *memStats `json:"memory"`
	Rootfs *fsStats  `json:"rootfs"`
	Logs   *fsStats  `json:"logs"`
}

type cpuStats struct {
	UsageCoreNanoSeconds *uint64 `json:"usageCoreNanoSeconds"`
}
type memStats struct {
	WorkingSetBytes *uint64 `json:"workingSetBytes"`
}
type fsStats struct {
	UsedBytes *uint64 `json:"usedBytes"`
}
type netStats struct {
	Interfaces []struct {
		Name    string  `json:"name"`
		RxBytes *uint64 `json:"rxBytes"`
	} `json:"interfaces"`
}

func statsSummary() (*summary, error) {
	b, err := get(plainClient, readOnly("/stats/summary"))
	if err != nil {
		return nil, err
	}
	var s summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode /stats/summary: %w", err)
	}
	return &s, nil
}

// metrics returns the samples of a Prometheus text page whose name is one
// of names: "name{labels}" → value.
func metrics(path string, names ...string) (map[string]float64, error) {
	b, err := get(plainClient, readOnly(path))
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		key, rest, _ := strings.Cut(line, " ")
		if j := strings.IndexByte(line, '}'); j >= 0 {
			key, rest = line[:j+1], line[j+1:]
		}
		f := strings.Fields(rest) // value [timestamp]
		if len(f) == 0 {
			continue
		}
		name, _, _ := strings.Cut(key, "{")
		for _, n := range names {
			if name == n {
				if v, err := strconv.ParseFloat(f[0], 64); err == nil {
					out[key] = v
				}
			}
		}
	}
	return out, nil
}
