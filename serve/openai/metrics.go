package openai

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus metrics: what the HTTP layer sees
// (requests, tokens, latencies per model) and, read at each scrape, the
// engine's counters (steps, batch sizes, queue time, adapters resident
// and evicted).
type metrics struct {
	registry         *prometheus.Registry
	requests         *prometheus.CounterVec
	rejected         *prometheus.CounterVec
	loads            *prometheus.CounterVec
	promptTokens     *prometheus.CounterVec
	completionTokens *prometheus.CounterVec
	duration         *prometheus.HistogramVec
	firstToken       *prometheus.HistogramVec
	interToken       *prometheus.HistogramVec
}

// latencyBuckets span a decoding step of a small model to a long request.
var latencyBuckets = prometheus.ExponentialBuckets(0.001, 2, 16)

func newMetrics(s *Server) *metrics {
	m := &metrics{registry: prometheus.NewRegistry()}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "peftonnx", Name: name, Help: help}, labels)
		m.registry.MustRegister(c)
		return c
	}
	histogram := func(name, help string) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "peftonnx", Name: name, Help: help, Buckets: latencyBuckets}, []string{"model"})
		m.registry.MustRegister(h)
		return h
	}
	m.requests = counter("http_requests_total", "HTTP requests by endpoint, model and status.", "path", "model", "code")
	m.rejected = counter("requests_rejected_total", "Requests refused for a limit, by reason.", "reason")
	m.loads = counter("adapter_operations_total", "Adapters loaded and unloaded over HTTP.", "op")
	m.promptTokens = counter("prompt_tokens_total", "Prompt tokens of finished generations, by model.", "model")
	m.completionTokens = counter("completion_tokens_total", "Generated tokens of finished generations, by model.", "model")
	m.duration = histogram("request_duration_seconds", "Time from a generation request's arrival to its answer, by model.")
	m.firstToken = histogram("time_to_first_token_seconds", "Time from handing a prompt to the engine to its first token (queue and prefill), by model.")
	m.interToken = histogram("inter_token_seconds", "Time between a sequence's tokens (its decoding step), by model.")
	m.registry.MustRegister(engineCollector{s}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// engineCollector reads the engine's Stats at each scrape.
type engineCollector struct{ s *Server }

var (
	descSteps       = engineDesc("steps_total", "Decoding steps run.")
	descStepSeconds = engineDesc("step_seconds_total", "Time spent in decoding steps.")
	descBatch       = engineDesc("batch_size", "Rows of each decoding step.")
	descQueued      = engineDesc("queued_requests", "Requests waiting for a batch row.")
	descActive      = engineDesc("active_sequences", "Sequences in the batch.")
	descResident    = engineDesc("adapters_resident", "LoRA adapters in memory.")
	descLoaded      = engineDesc("adapters_loaded", "Adapters loaded, resident or evicted.")
	descEvicted     = engineDesc("adapters_evicted_total", "Adapters evicted from memory (least recently used).")
	descReloaded    = engineDesc("adapters_reloaded_total", "Evicted adapters read again on demand.")
	descRequests    = engineDesc("requests_total", "Requests the engine served, by model.", "model")
	descQueueSecs   = engineDesc("queue_seconds_total", "Time requests waited for a batch row, by model.", "model")
	descBytes       = engineDesc("adapter_bytes", "Bytes of an adapter's tensors in memory.", "model")
)

func engineDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("peftonnx_engine_"+name, help, labels, nil)
}

func (c engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSteps, descStepSeconds, descBatch, descQueued, descActive, descResident,
		descLoaded, descEvicted, descReloaded, descRequests, descQueueSecs, descBytes} {
		ch <- d
	}
}

func (c engineCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.eng.Stats()
	ch <- prometheus.MustNewConstMetric(descSteps, prometheus.CounterValue, float64(st.Steps))
	ch <- prometheus.MustNewConstMetric(descStepSeconds, prometheus.CounterValue, st.StepSeconds)
	buckets := map[float64]uint64{}
	var cum uint64
	for n, count := range st.BatchSizes {
		cum += uint64(count)
		buckets[float64(n)] = cum
	}
	ch <- prometheus.MustNewConstHistogram(descBatch, uint64(st.Steps), float64(st.BatchRows), buckets)
	ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(st.Queued))
	ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(st.Active))
	ch <- prometheus.MustNewConstMetric(descResident, prometheus.GaugeValue, float64(st.Resident))
	ch <- prometheus.MustNewConstMetric(descEvicted, prometheus.CounterValue, float64(st.Evicted))
	ch <- prometheus.MustNewConstMetric(descReloaded, prometheus.CounterValue, float64(st.Reloaded))
	for name, a := range st.Adapters {
		model := c.s.modelLabel(name)
		ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(a.Requests), model)
		ch <- prometheus.MustNewConstMetric(descQueueSecs, prometheus.CounterValue, a.QueueSeconds, model)
	}
	adapters := c.s.eng.Adapters()
	ch <- prometheus.MustNewConstMetric(descLoaded, prometheus.GaugeValue, float64(len(adapters)-1))
	for _, a := range adapters {
		if !isBase(a) {
			ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(a.Bytes), a.Name)
		}
	}
}

// modelLabel names the engine's adapter name as requests do: the base by
// its model name.
func (s *Server) modelLabel(name string) string {
	if name == "" {
		return s.opts.ModelName
	}
	return name
}
