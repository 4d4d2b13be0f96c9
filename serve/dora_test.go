package serve_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/serve"
)

// TestDoRAMatchesApplied serves a DoRA adapter on the DoRA engine beside a
// plain LoRA adapter and the base, one request at a time and all at once
// (batched together: rows of the three in one step), and holds the greedy
// tokens to those of the adapted model of each (the DoRA adapter's
// branches applied, the LoRA adapter merged).
func TestDoRAMatchesApplied(t *testing.T) {
	f := newFixture(t, models.LlamaMini())
	paths := map[string]string{"": "", "a": f.LoRA4, "d": f.DoRA}
	want := map[string][][]int64{}
	for name, path := range paths {
		want[name] = f.reference(t, path)
	}
	for _, name := range []string{"a", "d"} {
		if slices.EqualFunc(want[name], want[""], slices.Equal) {
			t.Fatalf("adapter %q gives the base model's tokens; the fixture is too weak", name)
		}
	}
	e := openEngine(t, f, serve.Options{DoRA: true, MaxLoRAs: 2, MaxBatch: 9})
	for _, name := range []string{"a", "d"} {
		if _, err := e.Load(name, paths[name], false); err != nil {
			t.Fatal(err)
		}
	}
	for name := range paths {
		for i, p := range f.prompts {
			got, err := generate(t, e, name, p, f.newTokens)
			if err != nil {
				t.Fatalf("adapter %q, prompt %d: %v", name, i, err)
			}
			if !slices.Equal(got, want[name][i]) {
				t.Errorf("alone: adapter %q, prompt %d: got %v, want %v", name, i, got, want[name][i])
			}
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	for name := range paths {
		for i, p := range f.prompts {
			wg.Go(func() {
				got, err := generate(t, e, name, p, f.newTokens)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					errs = append(errs, fmt.Sprintf("adapter %q, prompt %d: %v", name, i, err))
				case !slices.Equal(got, want[name][i]):
					errs = append(errs, fmt.Sprintf("batched: adapter %q, prompt %d: got %v, want %v", name, i, got, want[name][i]))
				}
			})
		}
	}
	wg.Wait()
	slices.Sort(errs)
	for _, s := range errs {
		t.Error(s)
	}
	most := 0
	for n, c := range e.Stats().BatchSizes {
		if c > 0 {
			most = n
		}
	}
	if most < 3 {
		t.Errorf("the largest batch ran %d rows; the adapters were not batched together", most)
	}
}

// TestDoRARefusedWithoutOption: an engine without Options.DoRA refuses a
// DoRA adapter, saying to start the server with --dora, and keeps serving
// the rest.
func TestDoRARefusedWithoutOption(t *testing.T) {
	f := newFixture(t, models.LlamaTiny())
	e := openEngine(t, f, serve.Options{MaxTokens: 16})
	_, err := e.Load("d", f.DoRA, false)
	if err == nil || !errors.Is(err, serve.ErrAdapterMismatch) || !strings.Contains(err.Error(), "--dora") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Load of a DoRA adapter without Options.DoRA: %v; want a one-line ErrAdapterMismatch that names --dora", err)
	}
	if len(e.Adapters()) != 1 {
		t.Errorf("adapters %+v after the refusal, want the base only", e.Adapters())
	}
	if _, err := e.Load("a", f.LoRA4, false); err != nil {
		t.Fatal(err)
	}
	if _, err := generate(t, e, "a", f.prompts[0], 2); err != nil {
		t.Fatal(err)
	}
}

// TestDoRAEviction evicts the DoRA adapter and reads it again on demand:
// its gains are computed again and it gives its tokens; once only its
// magnitudes changed on disk, the reload is refused (the hash counts
// them).
func TestDoRAEviction(t *testing.T) {
	f := newFixture(t, models.LlamaTiny())
	ref := f.reference(t, f.DoRA)
	e := openEngine(t, f, serve.Options{DoRA: true, MaxCPULoRAs: 1})
	for name, path := range map[string]string{"d": f.DoRA, "a": f.LoRA4} {
		if _, err := e.Load(name, path, false); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		for _, name := range []string{"a", "d"} {
			if _, err := generate(t, e, name, f.prompts[0], f.newTokens); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := generate(t, e, "d", f.prompts[0], f.newTokens)
	if err != nil || !slices.Equal(got, ref[0]) {
		t.Fatalf("the reloaded DoRA adapter: %v, %v; want %v", got, err, ref[0])
	}
	if st := e.Stats(); st.Reloaded < 2 {
		t.Fatalf("%d reloads, want the adapters evicted and read again", st.Reloaded)
	}
	if _, err := generate(t, e, "a", f.prompts[0], 2); err != nil { // evicts d
		t.Fatal(err)
	}
	ad := f.Adapter(f.DoRA)
	for _, w := range ad.Weights {
		w.Magnitude.Data[0] *= 2
	}
	if err := adapter.SaveDir(f.DoRA, ad); err != nil {
		t.Fatal(err)
	}
	if _, err := generate(t, e, "d", f.prompts[0], 2); err == nil || !strings.Contains(err.Error(), "changed since it was loaded") {
		t.Errorf("reloading a DoRA adapter whose magnitudes changed: %v, want it refused as changed", err)
	}
}
