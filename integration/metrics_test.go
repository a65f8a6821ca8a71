package integration

import (
	"net/http"
	"regexp"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/testutil/fixtures"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// scrape reads the daemon's /metrics with the Prometheus text parser.
func scrape(t *testing.T, d *daemon) map[string]*dto.MetricFamily {
	t.Helper()
	m := regexp.MustCompile(`msg="serving metrics" address=(127\.0\.0\.1:\d+)`).FindStringSubmatch(d.Logs())
	if m == nil {
		t.Fatalf("no metrics address in the log:\n%s", d.Logs())
	}
	resp, err := http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return families
}

// value is the value of the series of a family with label name=value
// ("" matches a series without labels).
func value(families map[string]*dto.MetricFamily, family, name, val string) (float64, bool) {
	for _, m := range families[family].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == name && l.GetValue() == val {
				return m.GetGauge().GetValue() + m.GetCounter().GetValue(), true
			}
		}
		if name == "" && len(m.GetLabel()) == 0 {
			return m.GetGauge().GetValue() + m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// Pods and containers by state, and monitors re-adopted after a kill -9.
func TestMetricsOfTheEngine(t *testing.T) {
	d, image := busyboxDaemon(t, "")
	ctx := ctxT(t)
	pod, err := d.Runtime.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podSandboxConfig("metrics")})
	if err != nil {
		t.Fatal(err)
	}
	startContainer(ctx, t, d, pod.PodSandboxId, "running", image, "sleep 1000")
	_, err = d.Runtime.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod.PodSandboxId,
		Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "created"}, Image: spec(image)}})
	if err != nil {
		t.Fatal(err)
	}
	d.Kill9()
	d.Start()
	families := scrape(t, d)
	for _, c := range []struct {
		family, label, value string
		want                 float64
	}{
		{"cradle_pods", "state", "Ready", 1},
		{"cradle_pods", "state", "NotReady", 0},
		{"cradle_containers", "state", "Running", 1},
		{"cradle_containers", "state", "Created", 1},
		{"cradle_containers", "state", "Exited", 0},
		{"cradle_monitor_restarts_total", "reason", "recovered", 1},
		{"cradle_monitor_restarts_total", "reason", "wait_failed", 0},
		{"cradle_event_subscribers_cut_total", "", "", 0},
	} {
		if got, ok := value(families, c.family, c.label, c.value); !ok || got != c.want {
			t.Errorf("%s{%s=%q} = %v (found %v), want %v", c.family, c.label, c.value, got, ok, c.want)
		}
	}
	if _, err := d.Runtime.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	if got, _ := value(scrape(t, d), "cradle_containers", "state", "Running"); got != 0 {
		t.Errorf("running containers after the pod's removal: %v", got)
	}
	assertNoPodLeaks(t, d)
	assertNoContainerProcesses(t, d)
}

func TestMetricsEndpoint(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	reg.Push(t, reg.Ref("busybox:1"), fixtures.Busybox(t))
	d := newDaemon(t, "")
	ctx := ctxT(t)
	if _, err := d.Images.PullImage(ctx, &runtime.PullImageRequest{Image: spec(reg.Ref("busybox:1"))}); err != nil {
		t.Fatal(err)
	}
	d.Images.PullImage(ctx, &runtime.PullImageRequest{Image: spec(reg.Ref("missing:1"))})

	families := scrape(t, d)
	pulls := map[string]float64{}
	for _, metric := range families["cradle_image_pulls_total"].GetMetric() {
		pulls[metric.GetLabel()[0].GetValue()] = metric.GetCounter().GetValue()
	}
	if pulls["success"] != 1 || pulls["failure"] != 1 {
		t.Errorf("pulls = %v", pulls)
	}
	if families["cradle_image_pull_bytes_total"].GetMetric()[0].GetCounter().GetValue() == 0 {
		t.Error("no pull bytes counted")
	}
	var notFound float64
	for _, metric := range families["cradle_cri_errors_total"].GetMetric() {
		for _, l := range metric.GetLabel() {
			if l.GetName() == "code" && l.GetValue() == "NotFound" {
				notFound += metric.GetCounter().GetValue()
			}
		}
	}
	if notFound != 1 {
		t.Errorf("NotFound errors counted: %v", notFound)
	}
	if len(families["cradle_cri_request_duration_seconds"].GetMetric()) == 0 {
		t.Error("no CRI latency histogram")
	}
}
