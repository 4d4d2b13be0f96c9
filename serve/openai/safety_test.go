package openai

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peftonnx/peftonnx/serve"
)

// TestConcurrencyLimit fills MaxConcurrent with a slow request: the next
// is a 429 at once, and once the slot is free requests pass again.
func TestConcurrencyLimit(t *testing.T) {
	eng := newFake(t)
	eng.delay = 20 * time.Millisecond
	eng.started = make(chan struct{}, 1)
	_, url := startServer(t, eng, Options{MaxConcurrent: 1})
	done := make(chan int)
	go func() {
		code, _ := post(t, url+"/v1/completions", map[string]any{"model": "base", "prompt": "a", "max_tokens": 10})
		done <- code
	}()
	<-eng.started
	code, b := post(t, url+"/v1/completions", map[string]any{"model": "base", "prompt": "a", "max_tokens": 1})
	if code != http.StatusTooManyRequests || !strings.Contains(string(b), "the limit is 1") {
		t.Errorf("a second request with MaxConcurrent 1: %d %s, want 429", code, b)
	}
	// Other endpoints take no slot.
	if code, _ := get(t, url+"/v1/models"); code != http.StatusOK {
		t.Errorf("/v1/models while full: %d", code)
	}
	if code := <-done; code != http.StatusOK {
		t.Errorf("the request in flight: %d", code)
	}
	eng.delay = 0
	if code, b := post(t, url+"/v1/completions", map[string]any{"model": "base", "prompt": "a", "max_tokens": 1}); code != http.StatusOK {
		t.Errorf("after the slot is free: %d %s", code, b)
	}
	_, mb := get(t, url+"/metrics")
	if !strings.Contains(string(mb), `peftonnx_requests_rejected_total{reason="concurrency"} 1`) {
		t.Errorf("/metrics does not count the refusal:\n%s", mb)
	}
}

// TestQueueFull checks that the engine's full queue is a 429 with
// Retry-After.
func TestQueueFull(t *testing.T) {
	eng := newFake(t)
	eng.adapters["busy"] = serve.AdapterInfo{Name: "busy", Kind: serve.KindLoRA}
	eng.script["busy"] = eng.script[""]
	_, url := startServer(t, eng, Options{})
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/completions", strings.NewReader(`{"model": "busy", "prompt": "a"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a full queue: %d, Retry-After %q; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

// TestServeShutdown stops Serve with requests in flight: within the grace
// period they finish whole; past it they are cancelled; Serve returns nil
// both times.
func TestServeShutdown(t *testing.T) {
	for _, tc := range []struct {
		name      string
		grace     time.Duration
		maxTokens int
		whole     bool
	}{
		{"finish within the grace period", 10 * time.Second, 10, true},
		{"cancel past it", 50 * time.Millisecond, 1000, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng := newFake(t)
			eng.delay = 10 * time.Millisecond
			eng.started = make(chan struct{}, 4)
			s, err := New(eng, Options{Tokenizer: tinyLlamaTokenizer(t), MaxTokens: 1000})
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, stop := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- s.Serve(ctx, ln, tc.grace) }()
			url := "http://" + ln.Addr().String()
			var wg sync.WaitGroup
			results := make([][]byte, 3)
			codes := make([]int, 3)
			for i := range 3 {
				wg.Go(func() {
					codes[i], results[i] = post(t, url+"/v1/completions", map[string]any{"model": "base", "prompt": "a", "max_tokens": tc.maxTokens, "stream": i == 0})
				})
			}
			for range 3 {
				<-eng.started
			}
			start := time.Now()
			stop()
			wg.Wait()
			select {
			case err := <-served:
				if err != nil {
					t.Errorf("Serve returned %v, want nil", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("Serve did not return")
			}
			if elapsed := time.Since(start); !tc.whole && elapsed > 5*time.Second {
				t.Errorf("shutdown took %s with a grace of %s", elapsed, tc.grace)
			}
			for i := range 3 {
				complete := codes[i] == http.StatusOK
				if i == 0 { // the stream: cut with an error event, or whole
					body := string(results[i])
					complete = complete && strings.Contains(body, `"finish_reason":"length"`) && !strings.Contains(body, `"error"`)
					if !tc.whole && !strings.Contains(body, "the generation was cancelled") {
						t.Errorf("the cut stream does not say why: %.300s", body)
					}
				} else if complete {
					complete = len(decode[completionResponse](t, results[i]).Choices) == 1
				} else if !tc.whole && codes[i] != http.StatusServiceUnavailable {
					t.Errorf("request %d cut: status %d, want 503", i, codes[i])
				}
				if complete != tc.whole {
					t.Errorf("request %d: status %d, complete %v, want complete %v: %.200s", i, codes[i], complete, tc.whole, results[i])
				}
			}
			if !tc.whole && eng.canceledCount() != 3 {
				t.Errorf("%d generations were cancelled, want 3", eng.canceledCount())
			}
			if _, err := http.Get(url + "/healthz"); err == nil {
				t.Errorf("the server still accepts after Serve returned")
			}
		})
	}
}

// TestMetrics checks that /metrics has the HTTP layer's counts and the
// engine's.
func TestMetrics(t *testing.T) {
	eng := newFake(t)
	_, url := startServer(t, eng, Options{})
	for range 2 {
		post(t, url+"/v1/completions", map[string]any{"model": "base", "prompt": "a", "max_tokens": 3})
	}
	post(t, url+"/v1/completions", map[string]any{"model": "nosuch", "prompt": "a"})
	code, b := get(t, url+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`peftonnx_http_requests_total{code="200",model="base",path="/v1/completions"} 2`,
		`peftonnx_http_requests_total{code="404",model="",path="/v1/completions"} 1`,
		`peftonnx_completion_tokens_total{model="base"} 6`,
		`peftonnx_prompt_tokens_total{model="base"} `,
		`peftonnx_time_to_first_token_seconds_count{model="base"} 2`,
		`peftonnx_inter_token_seconds_count{model="base"} 4`,
		`peftonnx_engine_steps_total 3`,
		`peftonnx_engine_batch_size_bucket{le="1"} 1`,
		`peftonnx_engine_batch_size_bucket{le="2"} 3`,
		`peftonnx_engine_batch_size_sum 5`,
		`peftonnx_engine_requests_total{model="base"} 2`,
		`peftonnx_engine_adapters_resident 0`,
		`peftonnx_engine_adapters_evicted_total 0`,
		`go_goroutines `,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, b := get(t, url+"/healthz"); code != http.StatusOK || !strings.Contains(string(b), `"status":"ok"`) {
		t.Errorf("/healthz: %d %s", code, b)
	}
}

// stuckWriter is a client that reads nothing: its writes wait until
// release is closed.
type stuckWriter struct {
	header  http.Header
	release chan struct{}
}

func (w *stuckWriter) Header() http.Header { return w.header }
func (w *stuckWriter) WriteHeader(int)     {}
func (w *stuckWriter) Flush()              {}
func (w *stuckWriter) Write(b []byte) (int, error) {
	<-w.release
	return len(b), nil
}

// TestSlowClientDoesNotHoldTheEngine streams to a client that reads
// nothing: the engine's emit must not wait for it, so the generation runs
// to its end (the engine's goroutine serves the whole batch).
func TestSlowClientDoesNotHoldTheEngine(t *testing.T) {
	eng := newFake(t)
	eng.returned = make(chan struct{}, 1)
	s, err := New(eng, Options{Tokenizer: tinyLlamaTokenizer(t)})
	if err != nil {
		t.Fatal(err)
	}
	w := &stuckWriter{header: http.Header{}, release: make(chan struct{})}
	req := httptest.NewRequest(http.MethodPost, "/v1/completions", strings.NewReader(`{"model": "base", "prompt": "a", "max_tokens": 200, "stream": true}`))
	served := make(chan struct{})
	go func() {
		s.Handler().ServeHTTP(w, req)
		close(served)
	}()
	select {
	case <-eng.returned:
	case <-time.After(10 * time.Second):
		t.Fatal("the engine's emit waits for a client that reads nothing")
	}
	close(w.release)
	<-served
}
