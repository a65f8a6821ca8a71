package integration

import (
	"net/http"
	"regexp"
	"testing"

	"github.com/cradle-runtime/cradle/pkg/testutil/fixtures"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestMetricsEndpoint(t *testing.T) {
	reg := fixtures.StartRegistry(t)
	reg.Push(t, reg.Ref("busybox:1"), fixtures.Busybox(t))
	d := newDaemon(t, "")
	ctx := ctxT(t)
	if _, err := d.Images.PullImage(ctx, &runtime.PullImageRequest{Image: spec(reg.Ref("busybox:1"))}); err != nil {
		t.Fatal(err)
	}
	d.Images.PullImage(ctx, &runtime.PullImageRequest{Image: spec(reg.Ref("missing:1"))})

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
