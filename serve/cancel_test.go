package serve_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/serve"
)

// TestCancelAndClose ends a request whose client left (its context is
// cancelled mid-stream) while another goes on, and then closes the engine
// under a request: it ends with ErrClosed, and new ones are refused.
func TestCancelAndClose(t *testing.T) {
	f := newFixture(t, models.LlamaTiny())
	e, err := serve.New(f.Base, serve.Options{MaxTokens: 64})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err = e.Generate(ctx, serve.Request{Prompt: f.prompts[0], MaxTokens: 64}, func(ev serve.Event) error {
		if n++; n == 3 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || n > 4 {
		t.Errorf("cancelled after 3 tokens: %v after %d events, want context.Canceled right away", err, n)
	}
	if _, err := generate(t, e, "", f.prompts[1], 4); err != nil {
		t.Errorf("a request after the cancelled one: %v", err)
	}

	started := make(chan struct{})
	res := make(chan error, 1)
	go func() {
		first := true
		_, err := e.Generate(context.Background(), serve.Request{Prompt: f.prompts[0], MaxTokens: 64}, func(ev serve.Event) error {
			if first {
				first = false
				close(started)
			}
			return nil
		})
		res <- err
	}()
	<-started
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-res; !errors.Is(err, serve.ErrClosed) && err != nil {
		t.Errorf("a request in flight at Close: %v, want ErrClosed (or done)", err)
	}
	if _, err := generate(t, e, "", f.prompts[0], 2); !errors.Is(err, serve.ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestPanicKeepsServing: a panic on the engine's goroutine (here from an
// emit callback) ends the requests in flight with an error, not the
// process, and the engine serves the next request.
func TestPanicKeepsServing(t *testing.T) {
	f := newFixture(t, models.LlamaTiny())
	want := f.reference(t, "")
	e := openEngine(t, f, serve.Options{})
	n := 0
	_, err := e.Generate(context.Background(), serve.Request{Prompt: f.prompts[0], MaxTokens: 8}, func(ev serve.Event) error {
		if n++; n == 2 {
			panic("emit broke")
		}
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "internal error: emit broke") {
		t.Errorf("a panicking emit: %v, want an internal error", err)
	}
	got, err := generate(t, e, "", f.prompts[0], f.newTokens)
	if err != nil || !slices.Equal(got, want[0]) {
		t.Errorf("after the panic: %v, %v; want %v", got, err, want[0])
	}
}

// TestSlowClient: a client that takes long over each token slows its own
// stream, not another request's in the same batch; both get their tokens.
func TestSlowClient(t *testing.T) {
	f := newFixture(t, models.LlamaTiny())
	want := f.reference(t, "")
	e := openEngine(t, f, serve.Options{})
	slowDone := make(chan []int64, 1)
	started := make(chan struct{})
	go func() {
		var got []int64
		_, err := e.Generate(context.Background(), serve.Request{Prompt: f.prompts[0], MaxTokens: f.newTokens}, func(ev serve.Event) error {
			if len(got) == 0 && !ev.Done {
				close(started)
			}
			if !ev.Done {
				got = append(got, ev.Token)
			}
			time.Sleep(100 * time.Millisecond)
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		slowDone <- got
	}()
	<-started
	got, err := generate(t, e, "", f.prompts[1], f.newTokens)
	if err != nil || !slices.Equal(got, want[1]) {
		t.Errorf("the fast client: %v, %v; want %v", got, err, want[1])
	}
	select {
	case <-slowDone:
		t.Error("the fast client finished after the slow one: it waited for it")
	default:
	}
	if got := <-slowDone; !slices.Equal(got, want[0]) {
		t.Errorf("the slow client: got %v, want %v", got, want[0])
	}
}
