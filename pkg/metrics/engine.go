package metrics

import "github.com/prometheus/client_golang/prometheus"

// Engine is what the metrics read of the pod engine, at scrape time.
type Engine interface {
	// StateCounts counts pods and containers by state name.
	StateCounts() (pods, containers map[string]int)
	// MonitorRestarts counts container exit watches started again, by reason.
	MonitorRestarts() map[string]uint64
	// EventSubscribersCut counts event subscribers cut off for falling behind.
	EventSubscribersCut() uint64
}

var (
	podsDesc = prometheus.NewDesc("cradle_pods", "Pod sandboxes by state.", []string{"state"}, nil)
	ctrsDesc = prometheus.NewDesc("cradle_containers", "Containers by state.", []string{"state"}, nil)
	restarts = prometheus.NewDesc("cradle_monitor_restarts_total",
		"Container exit watches started again: after a daemon restart re-adopted a running container (recovered), or after a failed wait (wait_failed).",
		[]string{"reason"}, nil)
	cutDesc = prometheus.NewDesc("cradle_event_subscribers_cut_total",
		"GetContainerEvents subscribers cut off because they fell behind (their events were dropped, never waited for).", nil, nil)
)

// engineCollector reads the engine's counts when scraped.
type engineCollector struct{ e Engine }

func (c engineCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- podsDesc
	ch <- ctrsDesc
	ch <- restarts
	ch <- cutDesc
}

func (c engineCollector) Collect(ch chan<- prometheus.Metric) {
	pods, ctrs := c.e.StateCounts()
	for state, n := range pods {
		ch <- prometheus.MustNewConstMetric(podsDesc, prometheus.GaugeValue, float64(n), state)
	}
	for state, n := range ctrs {
		ch <- prometheus.MustNewConstMetric(ctrsDesc, prometheus.GaugeValue, float64(n), state)
	}
	for reason, n := range c.e.MonitorRestarts() {
		ch <- prometheus.MustNewConstMetric(restarts, prometheus.CounterValue, float64(n), reason)
	}
	ch <- prometheus.MustNewConstMetric(cutDesc, prometheus.CounterValue, float64(c.e.EventSubscribersCut()))
}

// WatchEngine adds the engine's pods and containers by state, monitor
// restarts and cut-off event subscribers to the registry.
func (m *Metrics) WatchEngine(e Engine) {
	if m == nil || e == nil {
		return
	}
	m.reg.MustRegister(engineCollector{e})
}
