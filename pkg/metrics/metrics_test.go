package metrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
)

func TestScrape(t *testing.T) {
	m := New()
	m.ObserveCRI("/runtime.v1.ImageService/PullImage", codes.OK, 20*time.Millisecond)
	m.ObserveCRI("/runtime.v1.ImageService/PullImage", codes.NotFound, time.Millisecond)
	m.ObservePull(1000, time.Second, nil)
	m.ObservePull(0, 0, errors.New("x"))
	m.WatchEngine(fakeEngine{})
	var none *Metrics
	none.ObserveCRI("x", codes.OK, 0) // metrics off: no panic
	none.ObservePull(1, 1, nil)
	none.WatchEngine(fakeEngine{})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := m.Serve(ctx, "127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	families := Parse(t, resp.Body)
	check := func(name string, labels map[string]string, want float64) {
		t.Helper()
		f, ok := families[name]
		if !ok {
			t.Errorf("no %s", name)
			return
		}
		for _, metric := range f.GetMetric() {
			if matches(metric.GetLabel(), labels) {
				var got float64
				switch {
				case metric.Counter != nil:
					got = metric.GetCounter().GetValue()
				case metric.Gauge != nil:
					got = metric.GetGauge().GetValue()
				case metric.Histogram != nil:
					got = float64(metric.GetHistogram().GetSampleCount())
				}
				if got != want {
					t.Errorf("%s%v = %v, want %v", name, labels, got, want)
				}
				return
			}
		}
		t.Errorf("%s has no series %v", name, labels)
	}
	check("cradle_cri_request_duration_seconds", map[string]string{"method": "/runtime.v1.ImageService/PullImage"}, 2)
	check("cradle_cri_errors_total", map[string]string{"method": "/runtime.v1.ImageService/PullImage", "code": "NotFound"}, 1)
	check("cradle_image_pulls_total", map[string]string{"result": "success"}, 1)
	check("cradle_image_pulls_total", map[string]string{"result": "failure"}, 1)
	check("cradle_image_pull_bytes_total", nil, 1000)
	check("cradle_image_pull_duration_seconds", nil, 1)
	check("cradle_pods", map[string]string{"state": "Ready"}, 2)
	check("cradle_containers", map[string]string{"state": "Exited"}, 1)
	check("cradle_monitor_restarts_total", map[string]string{"reason": "recovered"}, 3)
	check("cradle_event_subscribers_cut_total", nil, 4)
	if _, ok := families["process_resident_memory_bytes"]; !ok {
		t.Error("no process metrics")
	}
}

type fakeEngine struct{}

func (fakeEngine) StateCounts() (map[string]int, map[string]int) {
	return map[string]int{"Ready": 2, "NotReady": 0}, map[string]int{"Running": 0, "Exited": 1}
}
func (fakeEngine) MonitorRestarts() map[string]uint64 {
	return map[string]uint64{"recovered": 3, "wait_failed": 0}
}
func (fakeEngine) EventSubscribersCut() uint64 { return 4 }

func matches(pairs []*dto.LabelPair, want map[string]string) bool {
	got := map[string]string{}
	for _, p := range pairs {
		got[p.GetName()] = p.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// Parse reads the Prometheus text format with the Prometheus parser.
func Parse(t *testing.T, r io.Reader) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("parse metrics: %v", err)
	}
	return families
}
