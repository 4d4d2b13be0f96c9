package serve_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/serve"
)

// generate runs one request to the end and returns its tokens, checking
// the events and the usage on the way.
func generate(t testing.TB, e *serve.Engine, name string, prompt []int64, n int) ([]int64, error) {
	var toks []int64
	var reason string
	usage, err := e.Generate(context.Background(), serve.Request{Adapter: name, Prompt: prompt, MaxTokens: n}, func(ev serve.Event) error {
		if reason != "" {
			return fmt.Errorf("event %+v after the Done event", ev)
		}
		if ev.Done {
			reason = ev.FinishReason
			return nil
		}
		toks = append(toks, ev.Token)
		return nil
	})
	if err != nil {
		return toks, err
	}
	if reason != serve.FinishLength || len(toks) != n {
		return toks, fmt.Errorf("finished %q after %d tokens, want %q after %d", reason, len(toks), serve.FinishLength, n)
	}
	if usage.PromptTokens != len(prompt) || usage.CompletionTokens != n {
		return toks, fmt.Errorf("usage %+v, want %d prompt and %d completion tokens", usage, len(prompt), n)
	}
	return toks, nil
}

// openEngine opens an engine on f's base, closed with the test.
func openEngine(t testing.TB, f *fixture, opts serve.Options) *serve.Engine {
	t.Helper()
	e, err := serve.New(f.Base, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

// newEngine opens an engine with f's adapters loaded as a, b and p.
func newEngine(t testing.TB, f *fixture, opts serve.Options) *serve.Engine {
	t.Helper()
	e := openEngine(t, f, opts)
	for name, path := range map[string]string{"a": f.LoRA4, "b": f.LoRA8, "p": f.Prefix} {
		if _, err := e.Load(name, path, false); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// TestMatchesMergedModels holds the engine's greedy tokens for the base,
// a LoRA of rank 4, a LoRA of rank 8 on other modules and a prefix to
// those of the merged (or prefixed) model, one request at a time and all
// of them at once from concurrent goroutines, batched together.
func TestMatchesMergedModels(t *testing.T) {
	f := newFixture(t, models.LlamaMini())
	paths := map[string]string{"": "", "a": f.LoRA4, "b": f.LoRA8, "p": f.Prefix}
	want := map[string][][]int64{}
	for name, path := range paths {
		want[name] = f.reference(t, path)
	}
	// The adapters must change the output, or the test proves nothing.
	for _, name := range []string{"a", "b", "p"} {
		if slices.EqualFunc(want[name], want[""], slices.Equal) {
			t.Fatalf("adapter %q gives the base model's tokens; the fixture is too weak", name)
		}
	}

	for _, o := range []serve.Options{{MaxLoRAs: 2, MaxBatch: 8}, {MaxLoRAs: 1, MaxBatch: 8}, {MaxLoRAs: 3, MaxBatch: 6, MaxJoin: 1}} {
		t.Run(fmt.Sprintf("max_loras=%d,max_join=%d", o.MaxLoRAs, o.MaxJoin), func(t *testing.T) {
			e := newEngine(t, f, o)
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
			for round := range 2 {
				for name := range paths {
					for i, p := range f.prompts {
						wg.Go(func() {
							got, err := generate(t, e, name, p, f.newTokens)
							mu.Lock()
							defer mu.Unlock()
							switch {
							case err != nil:
								errs = append(errs, fmt.Sprintf("round %d, adapter %q, prompt %d: %v", round, name, i, err))
							case !slices.Equal(got, want[name][i]):
								errs = append(errs, fmt.Sprintf("batched: adapter %q, prompt %d: got %v, want %v", name, i, got, want[name][i]))
							}
						})
					}
				}
			}
			wg.Wait()
			slices.Sort(errs)
			for _, s := range errs {
				t.Error(s)
			}
			st := e.Stats()
			most := 0
			for n, c := range st.BatchSizes {
				if c > 0 {
					most = n
				}
			}
			if most < 3 {
				t.Errorf("the largest batch ran %d rows (batch sizes %v); concurrent requests were not batched", most, st.BatchSizes)
			}
			if got := st.Adapters["a"].Requests; got != int64(3*len(f.prompts)) {
				t.Errorf("stats count %d requests on adapter a, want %d", got, 3*len(f.prompts))
			}
		})
	}
}

// TestLoadErrors checks that what does not fit is refused, saying what.
func TestLoadErrors(t *testing.T) {
	f := newFixture(t, models.LlamaTiny())
	other := newFixture(t, models.LlamaMini()) // hidden 64, not 16
	e := newEngine(t, f, serve.Options{MaxTokens: 16})
	for _, c := range []struct {
		name, path string
		is         error
		says       string
	}{
		{"x", other.LoRA4, serve.ErrAdapterMismatch, "lora_A [64 4]"},
		{"y", other.Prefix, serve.ErrAdapterMismatch, "head width"},
		{"a", f.LoRA8, serve.ErrAdapterExists, `"a"`},
		{"z", f.Dir + "/missing", nil, "missing"},
	} {
		_, err := e.Load(c.name, c.path, false)
		if err == nil {
			t.Errorf("Load(%q, %s) succeeded", c.name, c.path)
			continue
		}
		if c.is != nil && !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("Load(%q, %s): %v; want an error that is %v and says %q", c.name, c.path, err, c.is, c.says)
		}
	}
	_, err := generate(t, e, "nope", []int64{1, 2}, 2)
	if !errors.Is(err, serve.ErrUnknownAdapter) || !strings.Contains(err.Error(), `"a", "b", "p"`) {
		t.Errorf("unknown adapter: %v; want ErrUnknownAdapter listing the loaded ones", err)
	}
	if _, err := generate(t, e, "a", []int64{1, 2}, 17); !errors.Is(err, serve.ErrTooLong) {
		t.Errorf("17 tokens over a limit of 16: %v, want ErrTooLong", err)
	}
	if _, err := generate(t, e, "a", []int64{1, 99}, 2); !errors.Is(err, serve.ErrInvalidRequest) {
		t.Errorf("token 99 of a vocabulary of 32: %v, want ErrInvalidRequest", err)
	}
	if err := e.Unload("nope"); !errors.Is(err, serve.ErrUnknownAdapter) {
		t.Errorf("Unload(nope): %v, want ErrUnknownAdapter", err)
	}
	if got := len(e.Adapters()); got != 4 {
		t.Errorf("after refused loads, %d adapters listed, want the base and 3", got)
	}
}

// TestTargets stacks the q and v projections only: an adapter there runs
// as it should, and one on other layers is refused, naming them.
func TestTargets(t *testing.T) {
	f := newFixture(t, models.LlamaTiny())
	want := f.reference(t, f.LoRA4)
	e, err := serve.New(f.Base, serve.Options{Targets: []string{".*q_proj", ".*v_proj"}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := e.Load("a", f.LoRA4, false); err != nil {
		t.Fatal(err)
	}
	_, err = e.Load("b", f.LoRA8, false)
	if !errors.Is(err, serve.ErrAdapterMismatch) || !strings.Contains(err.Error(), "not among the stacked targets") {
		t.Errorf("an adapter on k, o and down with q and v stacked: %v, want ErrAdapterMismatch naming the targets", err)
	}
	got, err := generate(t, e, "a", f.prompts[2], f.newTokens)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want[2]) {
		t.Errorf("got %v, want %v", got, want[2])
	}
	if _, err := serve.New(f.Base, serve.Options{Targets: []string{".*nothing"}}); err == nil || !strings.Contains(err.Error(), "matched no linear layer") {
		t.Errorf("targets that match nothing: %v", err)
	}
}

// TestAdapterFormats loads the rank-4 adapter from an .onnx_adapter file
// and from a PaddleNLP folder: each runs as the HF PEFT folder does.
func TestAdapterFormats(t *testing.T) {
	f := newFixture(t, models.LlamaTiny())
	want := f.reference(t, f.LoRA4)
	ad := f.Adapter(f.LoRA4)
	// An .onnx_adapter holds no alpha (ONNX Runtime's graph carries the
	// scaling, read back as 1): fold it into B, as an export for ONNX
	// Runtime does.
	folded := adapter.NewLoRA(*ad.LoRA)
	for mod, w := range ad.Weights {
		b := *w.B
		b.Data = slices.Clone(w.B.Data)
		for i := range b.Data {
			b.Data[i] *= float32(ad.LoRA.ScalingFor(mod))
		}
		folded.Weights[mod] = adapter.LoRAWeights{A: w.A, B: &b}
	}
	ortFile := filepath.Join(f.Dir, "lora4.onnx_adapter")
	if err := adapter.Save(ortFile, folded); err != nil {
		t.Fatal(err)
	}
	paddle := filepath.Join(f.Dir, "lora4-paddle")
	if err := adapter.SavePaddleDir(paddle, ad); err != nil {
		t.Fatal(err)
	}
	e, err := serve.New(f.Base, serve.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for name, path := range map[string]string{"hf": f.LoRA4, "ort": ortFile, "paddle": paddle} {
		info, err := e.Load(name, path, false)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if info.Kind != serve.KindLoRA || info.Rank != 4 || len(info.Targets) != 4 {
			t.Errorf("%s: %+v, want a rank-4 LoRA on 4 modules", name, info)
		}
		for i, p := range f.prompts {
			got, err := generate(t, e, name, p, f.newTokens)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !slices.Equal(got, want[i]) {
				t.Errorf("%s, prompt %d: got %v, want %v", name, i, got, want[i])
			}
		}
	}
}
