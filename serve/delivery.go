package serve

import (
	"context"
	"sync"
)

// delivery hands one request's events to its emit callback on a goroutine
// of its own, so that a slow client holds up its own stream only, never
// the batch: the engine's goroutine puts events in a buffer with room for
// every event the request can have (its token budget and Done), and an
// error (or a panic) of emit is seen by the engine at the next step, which
// then ends the sequence.
type delivery struct {
	events chan Event
	done   chan struct{} // the goroutine has returned

	mu  sync.Mutex
	err error // the first error of emit
}

// newDelivery starts the goroutine that calls emit for up to n events,
// until ctx is done (the client left: nothing more reaches it).
func newDelivery(ctx context.Context, n int, emit func(Event) error) *delivery {
	d := &delivery{events: make(chan Event, n), done: make(chan struct{})}
	go func() {
		defer close(d.done)
		for ev := range d.events {
			if d.failed() != nil || ctx.Err() != nil {
				continue // drain: nothing reaches the client after an error
			}
			if err := callEmit(emit, ev); err != nil {
				d.mu.Lock()
				d.err = err
				d.mu.Unlock()
			}
		}
	}()
	return d
}

// callEmit calls emit, turning a panic into an error.
func callEmit(emit func(Event) error, ev Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errorf("internal error: %v", r)
		}
	}()
	return emit(ev)
}

// send queues ev without blocking and returns the error emit gave for an
// earlier event, if any.
func (d *delivery) send(ev Event) error {
	select {
	case d.events <- ev:
	default:
		return errorf("internal error: more events than the request's %d", cap(d.events))
	}
	return d.failed()
}

// failed returns the first error of emit, nil while there is none.
func (d *delivery) failed() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// close says that no event follows.
func (d *delivery) close() { close(d.events) }

// wait waits until every event was handed to emit, and returns emit's
// first error.
func (d *delivery) wait() error {
	<-d.done
	return d.failed()
}
