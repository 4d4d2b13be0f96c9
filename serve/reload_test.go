package serve_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/serve"
)

// TestReloadUnderLoad swaps the adapter behind one name back and forth,
// and loads and unloads another, while clients generate: no request is
// lost, and each gets exactly the tokens of one version, never a mix.
func TestReloadUnderLoad(t *testing.T) {
	f := newFixture(t, models.LlamaMini())
	refA, refB, refBase := f.reference(t, f.LoRA4), f.reference(t, f.LoRA8), f.reference(t, "")
	e := newEngine(t, f, serve.Options{MaxLoRAs: 2, MaxBatch: 4, MaxQueue: 256})
	if _, err := e.Load("x", f.LoRA4, false); err != nil {
		t.Fatal(err)
	}
	hashA := e.Adapters()[4].Hash
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[string]int{}
	stop := make(chan struct{})
	served := make(chan struct{}, 1000)
	var loads sync.WaitGroup
	loads.Go(func() {
		defer close(stop)
		for i := range 400 {
			<-served // swap as requests come back, so that swaps fall among them
			mu.Lock()
			both := seen["a"] >= 2 && seen["b"] >= 2
			mu.Unlock()
			if both && i >= 12 {
				return
			}
			path := []string{f.LoRA8, f.LoRA4}[i%2]
			if _, err := e.Load("x", path, true); err != nil {
				t.Error(err)
				return
			}
			if _, err := e.Load("tmp", f.LoRA8, false); err != nil {
				t.Error(err)
				return
			}
			if err := e.Unload("tmp"); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for c := range 6 {
		wg.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				i := (c + k) % len(f.prompts)
				name := []string{"x", ""}[c%2]
				got, err := generate(t, e, name, f.prompts[i], f.newTokens)
				mu.Lock()
				switch {
				case err != nil:
					t.Errorf("client %d, request %d: %v", c, k, err)
				case name == "" && !slices.Equal(got, refBase[i]):
					t.Errorf("client %d: base: got %v, want %v", c, got, refBase[i])
				case name == "x" && slices.Equal(got, refA[i]):
					seen["a"]++
				case name == "x" && slices.Equal(got, refB[i]):
					seen["b"]++
				case name == "x":
					t.Errorf("client %d: prompt %d on x gave %v: neither version's tokens (%v or %v)", c, i, got, refA[i], refB[i])
				}
				mu.Unlock()
				select {
				case served <- struct{}{}:
				default:
				}
			}
		})
	}
	wg.Wait()
	loads.Wait()
	t.Logf("versions served: %v", seen)
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Errorf("versions served %v: the swaps did not happen under load", seen)
	}
	if _, err := e.Load("x", f.LoRA8, true); err != nil {
		t.Fatal(err)
	}
	if h := e.Adapters()[4].Hash; h == hashA || len(h) != 64 {
		t.Errorf("after reloading x with another adapter, hash %q (was %q)", h, hashA)
	}
}

// TestEviction keeps one LoRA resident: the others are evicted, read
// again when a request names them, and still give their tokens.
func TestEviction(t *testing.T) {
	f := newFixture(t, models.LlamaTiny())
	refA, refB := f.reference(t, f.LoRA4), f.reference(t, f.LoRA8)
	e := newEngine(t, f, serve.Options{MaxCPULoRAs: 1})
	resident := func() map[string]bool {
		r := map[string]bool{}
		for _, a := range e.Adapters() {
			r[a.Name] = a.Resident
			if a.Resident != (a.Bytes > 0) && a.Kind != serve.KindBase {
				t.Errorf("adapter %q: resident %v with %d bytes", a.Name, a.Resident, a.Bytes)
			}
		}
		return r
	}
	r := resident()
	if r["a"] == r["b"] || !r["p"] {
		t.Fatalf("after loading a and b with one LoRA resident: %v, want one of them evicted (prefixes stay)", r)
	}
	// Alternate, starting with the evicted one, so that every request
	// reloads its adapter and evicts the other.
	order := []string{"a", "b"}
	if r["a"] {
		order = []string{"b", "a"}
	}
	refs := map[string][][]int64{"a": refA, "b": refB}
	for round := range 2 {
		for _, name := range order {
			ref := refs[name]
			got, err := generate(t, e, name, f.prompts[0], f.newTokens)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, ref[0]) {
				t.Errorf("round %d, %s: got %v, want %v", round, name, got, ref[0])
			}
		}
	}
	// Concurrently: reloads race evictions (and Stats) without a deadlock.
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Go(func() {
			for k := range 3 {
				name, ref := "a", refA
				if (c+k)%2 == 1 {
					name, ref = "b", refB
				}
				got, err := generate(t, e, name, f.prompts[1], f.newTokens)
				if err != nil || !slices.Equal(got, ref[1]) {
					t.Errorf("concurrent %s: %v, %v; want %v", name, got, err, ref[1])
				}
				e.Stats()
			}
		})
	}
	wg.Wait()
	st := e.Stats()
	if st.Evicted < 3 || st.Reloaded < 3 || st.Resident != 1 {
		t.Errorf("stats: %d evicted, %d reloaded, %d resident; want ≥3, ≥3 and 1", st.Evicted, st.Reloaded, st.Resident)
	}
}

// TestUnloadInFlight unloads an adapter while its requests run: they
// finish on it; a later request gets ErrUnknownAdapter.
func TestUnloadInFlight(t *testing.T) {
	f := newFixture(t, models.LlamaTiny())
	ref := f.reference(t, f.LoRA4)
	e := newEngine(t, f, serve.Options{})
	started := make(chan struct{})
	var once sync.Once
	res := make(chan error, 1)
	go func() {
		var got []int64
		_, err := e.Generate(t.Context(), serve.Request{Adapter: "a", Prompt: f.prompts[0], MaxTokens: f.newTokens}, func(ev serve.Event) error {
			once.Do(func() { close(started) })
			if !ev.Done {
				got = append(got, ev.Token)
			}
			return nil
		})
		if err == nil && !slices.Equal(got, ref[0]) {
			err = fmt.Errorf("got %v, want %v", got, ref[0])
		}
		res <- err
	}()
	<-started
	if err := e.Unload("a"); err != nil {
		t.Fatal(err)
	}
	if err := <-res; err != nil {
		t.Errorf("the request in flight: %v", err)
	}
	if _, err := generate(t, e, "a", f.prompts[0], 2); !errors.Is(err, serve.ErrUnknownAdapter) {
		t.Errorf("after Unload: %v, want ErrUnknownAdapter", err)
	}
}
