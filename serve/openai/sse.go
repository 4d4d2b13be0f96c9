package openai

import (
	"encoding/json"
	"net/http"
	"sync"
)

// eventStream writes server-sent events: "data: JSON" each, flushed at
// once, and "data: [DONE]" at the end. It is safe for concurrent use (the
// choices of one request write from their own goroutines).
type eventStream struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
}

func newEventStream(w http.ResponseWriter) *eventStream {
	return &eventStream{w: w, rc: http.NewResponseController(w)}
}

func (es *eventStream) start() {
	if es.started {
		return
	}
	es.started = true
	h := es.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	es.w.WriteHeader(http.StatusOK)
}

// send writes one event with v as its JSON data.
func (es *eventStream) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return es.write("data: " + string(b) + "\n\n")
}

func (es *eventStream) done() error { return es.write("data: [DONE]\n\n") }

func (es *eventStream) write(s string) error {
	es.mu.Lock()
	defer es.mu.Unlock()
	es.start()
	if _, err := es.w.Write([]byte(s)); err != nil {
		return err
	}
	return es.rc.Flush()
}

// fail ends a stream with an error event, or answers an error when
// nothing was written yet.
func (es *eventStream) fail(err error) {
	es.mu.Lock()
	if !es.started {
		es.started = true
		writeError(es.w, err)
		es.mu.Unlock()
		return
	}
	es.mu.Unlock()
	if es.send(asAPIError(err).body()) == nil {
		es.done()
	}
}

// end ends the stream of a generation that returned outs and err: the
// error event on err; else, where includeUsage, the chunk that
// usageChunk makes of the summed usage, then [DONE].
func (es *eventStream) end(outs []outcome, err error, includeUsage bool, usageChunk func(*usageJSON) any) {
	if err != nil {
		es.fail(err)
		return
	}
	if includeUsage && es.send(usageChunk(sumUsage(outs))) != nil {
		return
	}
	es.done()
}
