package serve_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/serve"
)

// TestDoRAExternalDataClose: a DoRA engine on a model with external data,
// which New closes, computes a DoRA adapter's gains from that data when
// the adapter is loaded (its tokens are the adapted model's); adapters
// loaded while the engine closes either load or fail with ErrClosed.
func TestDoRAExternalDataClose(t *testing.T) {
	f := newFixture(t, models.LlamaMini())
	want := f.reference(t, f.DoRA)
	m := f.Model(t)
	path := filepath.Join(t.TempDir(), "model.onnx")
	if err := m.Save(path, graph.SaveOptions{ExternalData: true}); err != nil {
		t.Fatal(err)
	}
	m.Close()
	e, err := serve.New(path, serve.Options{DoRA: true, MaxLoRAs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Load("d", f.DoRA, false); err != nil {
		t.Fatal(err)
	}
	for i, p := range f.prompts {
		got, err := generate(t, e, "d", p, f.newTokens)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want[i]) {
			t.Errorf("prompt %d: got %v, want the adapted model's %v", i, got, want[i])
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for k := range 4 {
		wg.Go(func() {
			for i := range 8 {
				if _, err := e.Load(fmt.Sprintf("d%d-%d", k, i), f.DoRA, false); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, serve.ErrClosed) {
			t.Errorf("Load while the engine closes: %v, want success or ErrClosed", err)
		}
	}
	if _, err := e.Load("late", f.DoRA, false); !errors.Is(err, serve.ErrClosed) {
		t.Errorf("Load after Close: %v, want ErrClosed", err)
	}
}
