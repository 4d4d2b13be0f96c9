package openai

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peftonnx/peftonnx/serve"
	"github.com/peftonnx/peftonnx/tokenizer"
)

// fakeEngine stands in for serve.Engine in the tests of the HTTP layer:
// each model answers a fixed script of tokens, in turn, so that the text
// a client gets can be checked against the script decoded. The real
// engine is driven in engine_test.go.
type fakeEngine struct {
	mu       sync.Mutex
	script   map[string][]int64 // by adapter name, "" the base
	adapters map[string]serve.AdapterInfo
	delay    time.Duration // between tokens
	prompts  [][]int64     // the prompts received, in order
	reqs     []serve.Request
	canceled int           // generations that ended by their context
	started  chan struct{} // receives when a generation gives its first token, if set
	returned chan struct{} // receives when a Generate returns, if set
}

func (f *fakeEngine) Generate(ctx context.Context, r serve.Request, emit func(serve.Event) error) (serve.Usage, error) {
	f.mu.Lock()
	script, ok := f.script[r.Adapter]
	if _, loaded := f.adapters[r.Adapter]; r.Adapter != "" && !loaded {
		ok = false
	}
	f.prompts = append(f.prompts, r.Prompt)
	f.reqs = append(f.reqs, r)
	delay, started, returned := f.delay, f.started, f.returned
	f.mu.Unlock()
	if returned != nil {
		defer func() { returned <- struct{}{} }()
	}
	if !ok {
		return serve.Usage{}, fmt.Errorf("serve: %w %q", serve.ErrUnknownAdapter, r.Adapter)
	}
	if r.Adapter == "busy" {
		return serve.Usage{}, fmt.Errorf("serve: %w: 64 requests wait", serve.ErrQueueFull)
	}
	u := serve.Usage{PromptTokens: len(r.Prompt)}
	for i := 0; i < r.MaxTokens; i++ {
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			f.mu.Lock()
			f.canceled++
			f.mu.Unlock()
			return u, ctx.Err()
		}
		if err := emit(serve.Event{Token: script[i%len(script)]}); err != nil {
			return u, err
		}
		if i == 0 && started != nil {
			started <- struct{}{}
		}
		u.CompletionTokens++
	}
	return u, emit(serve.Event{Done: true, FinishReason: serve.FinishLength})
}

func (f *fakeEngine) Load(name, path string, replace bool) (serve.AdapterInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if strings.Contains(path, "mismatch") {
		return serve.AdapterInfo{}, fmt.Errorf("serve: %s: %w: module model.layers.0.attn.q_proj: lora_A is [8, 32], the base's input is 16", path, serve.ErrAdapterMismatch)
	}
	if _, ok := f.adapters[name]; ok && !replace {
		return serve.AdapterInfo{}, fmt.Errorf("serve: %w: %q (give load_inplace to replace it)", serve.ErrAdapterExists, name)
	}
	info := serve.AdapterInfo{Name: name, Kind: serve.KindLoRA, Path: path, Hash: fmt.Sprintf("%064x", len(path)), Rank: 4, Bytes: 1024, Resident: true, LoadedAt: time.Now()}
	f.adapters[name] = info
	if _, ok := f.script[name]; !ok {
		f.script[name] = f.script[""][1:]
	}
	return info, nil
}

func (f *fakeEngine) Unload(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.adapters[name]; !ok {
		return fmt.Errorf("serve: %w %q", serve.ErrUnknownAdapter, name)
	}
	delete(f.adapters, name)
	return nil
}

func (f *fakeEngine) Adapters() []serve.AdapterInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []serve.AdapterInfo{{Name: "", Kind: serve.KindBase, Path: "model.onnx", Hash: strings.Repeat("ab", 32), Resident: true}}
	var names []string
	for n := range f.adapters {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		out = append(out, f.adapters[n])
	}
	return out
}

func (f *fakeEngine) Stats() serve.Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return serve.Stats{Adapters: map[string]serve.AdapterStats{"": {Requests: int64(len(f.reqs))}}, Steps: 3, BatchRows: 5, BatchSizes: []int64{0, 1, 2}, Resident: len(f.adapters)}
}

func (f *fakeEngine) lastPrompt() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.prompts[len(f.prompts)-1]
}

func (f *fakeEngine) canceledCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.canceled
}

// sharedDir is the folder of the real models, beside the project's root.
const sharedDir = "../../../shared/models"

var (
	tokOnce sync.Once
	tok     *tokenizer.Tokenizer
	tokErr  error
)

// tinyLlamaTokenizer loads the tokenizer of the shared tiny LLaMA (with
// its tokenizer_config.json and chat template).
func tinyLlamaTokenizer(t testing.TB) *tokenizer.Tokenizer {
	t.Helper()
	path := filepath.Join(sharedDir, "tiny-llama-genai-fp16", "tokenizer.json")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("the shared models are not beside the project: %v", err)
	}
	tokOnce.Do(func() { tok, tokErr = tokenizer.Load(path) })
	if tokErr != nil {
		t.Fatal(tokErr)
	}
	return tok
}

// scriptText is the text of the base's script.
const scriptText = "the quick brown fox jumps over the lazy dog, and then it runs away"

func newFake(t testing.TB) *fakeEngine {
	t.Helper()
	ids, err := tinyLlamaTokenizer(t).Encode(scriptText, false)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeEngine{script: map[string][]int64{"": ids}, adapters: map[string]serve.AdapterInfo{}}
}
