package openai

import (
	"sync"
	"time"

	"github.com/peftonnx/peftonnx/serve"
)

// eventQueue hands the engine's events to the request's goroutine. push,
// which the engine calls on its own goroutine, never waits: a slow client
// must not hold up the batch its sequence is in. The request's goroutine
// takes the events with pop and writes them out at its own pace; stop
// makes the next push fail, which ends the sequence.
type eventQueue struct {
	mu     sync.Mutex
	events []timedEvent
	closed bool          // the engine is done with the sequence
	quit   error         // set by stop: what push returns
	ready  chan struct{} // holds one wake-up while something is new
}

// timedEvent is an event and when the engine gave it, for the latency
// metrics.
type timedEvent struct {
	serve.Event
	at time.Time
}

func newEventQueue() *eventQueue { return &eventQueue{ready: make(chan struct{}, 1)} }

func (q *eventQueue) push(ev serve.Event) error {
	q.mu.Lock()
	if q.quit != nil {
		err := q.quit
		q.mu.Unlock()
		return err
	}
	q.events = append(q.events, timedEvent{ev, time.Now()})
	q.mu.Unlock()
	q.wake()
	return nil
}

// close says that no more events come.
func (q *eventQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.wake()
}

// stop makes later pushes return err.
func (q *eventQueue) stop(err error) {
	q.mu.Lock()
	if q.quit == nil {
		q.quit = err
	}
	q.mu.Unlock()
}

func (q *eventQueue) wake() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pop waits for events and takes all there are; false once the queue is
// closed and empty.
func (q *eventQueue) pop() ([]timedEvent, bool) {
	for {
		q.mu.Lock()
		if len(q.events) > 0 {
			evs := q.events
			q.events = nil
			q.mu.Unlock()
			return evs, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return nil, false
		}
		<-q.ready
	}
}
