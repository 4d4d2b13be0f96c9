package openai

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peftonnx/peftonnx/internal/servetest"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/serve"
	"github.com/peftonnx/peftonnx/tokenizer"
)

// realSetup is the real engine behind the server, on the fixture's tiny
// LLaMA (with the shared tiny LLaMA's tokenizer beside it) and its three
// adapters, loaded as "a" (LoRA r=4), "b" (LoRA r=8, other modules) and
// "p" (prefix).
type realSetup struct {
	f    *servetest.Fixture
	tok  *tokenizer.Tokenizer
	eng  *serve.Engine
	srv  *Server
	url  string
	eos  []int64
	path map[string]string // model name to adapter folder, "" for the base
}

func newRealSetup(t testing.TB, opts Options) *realSetup {
	t.Helper()
	return newSetup(t, opts, false)
}

// newSetup is newRealSetup; with dora the engine takes DoRA adapters
// (serve.Options.DoRA) and holds the fixture's DoRA adapter as "d" too.
func newSetup(t testing.TB, opts Options, dora bool) *realSetup {
	t.Helper()
	cfg := models.LlamaTiny()
	cfg.VocabSize = servetest.TinyLlamaVocab
	f := servetest.New(t, cfg, filepath.Join("..", servetest.TinyLlamaTokenizerDir))
	tk, err := tokenizer.Load(filepath.Join(f.Dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	rs := &realSetup{f: f, tok: tk, eos: []int64{tk.EOS()},
		path: map[string]string{"base": "", "a": f.LoRA4, "b": f.LoRA8, "p": f.Prefix}}
	names := []string{"a", "b", "p"}
	if dora {
		rs.path["d"] = f.DoRA
		names = append(names, "d")
	}
	eng, err := serve.New(f.Base, serve.Options{MaxLoRAs: 4, MaxBatch: 16, MaxQueue: 64, Threads: 1, EOS: rs.eos, MaxTokens: max(opts.MaxTokens, DefaultMaxTokens), DoRA: dora})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	for _, name := range names {
		if _, err := eng.Load(name, rs.path[name], false); err != nil {
			t.Fatal(err)
		}
	}
	rs.eng = eng
	if opts.AdapterRoot == fixtureRoot {
		opts.AdapterRoot = f.Dir
	}
	opts.Tokenizer = tk
	if opts.ChatTemplate == "" {
		if opts.ChatTemplate, err = ChatTemplateFromConfig(filepath.Join(f.Dir, "tokenizer_config.json")); err != nil {
			t.Fatal(err)
		}
	}
	rs.srv, rs.url = startServer(t, eng, opts)
	return rs
}

// expected returns the text and token count that a completion of prompt on
// model must give: the merged (adapted for DoRA, or prefixed) model's greedy tokens, decoded
// after the prompt and with the prompt's text taken off.
func (rs *realSetup) expected(t testing.TB, model string, prompts []string, n int) (texts []string, counts []int) {
	t.Helper()
	var ids [][]int64
	for _, p := range prompts {
		e, err := rs.tok.Encode(p, true)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e)
	}
	for i, toks := range rs.f.Reference(t, rs.path[model], ids, n, rs.eos) {
		promptText, _ := rs.tok.Decode(ids[i], true)
		all, _ := rs.tok.Decode(append(append([]int64{}, ids[i]...), toks...), true)
		text, ok := strings.CutPrefix(all, promptText)
		if !ok {
			t.Fatalf("the prompt %q decodes to %q, not a prefix of %q", prompts[i], promptText, all)
		}
		texts, counts = append(texts, text), append(counts, len(toks))
	}
	return texts, counts
}

// fixtureRoot as Options.AdapterRoot asks newRealSetup for the fixture's folder.
const fixtureRoot = "<fixture>"

var realPrompts = []string{"Once upon a time", "The capital of France is", "def fibonacci(n):"}

// TestConcurrentClientsGetMergedTokens has 16 clients send completions
// for the base, a LoRA of rank 4, a LoRA of rank 8 on other modules and a
// prefix adapter, streaming and not, at once: each must get the text of
// the merged (or prefixed) model's greedy tokens, with usage counting
// them.
func TestConcurrentClientsGetMergedTokens(t *testing.T) {
	rs := newRealSetup(t, Options{})
	const n = 8
	models := []string{"base", "a", "b", "p"}
	want := map[string][]string{}
	counts := map[string][]int{}
	for _, m := range models {
		want[m], counts[m] = rs.expected(t, m, realPrompts, n)
	}
	for _, m := range models[1:] {
		if strings.Join(want[m], "|") == strings.Join(want["base"], "|") {
			t.Fatalf("adapter %s gives the base's text; the fixture proves nothing", m)
		}
	}
	promptLen := func(p string) int { ids, _ := rs.tok.Encode(p, true); return len(ids) }

	const clients, rounds = 16, 3
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	for c := range clients {
		wg.Go(func() {
			for r := range rounds {
				m := models[(c+r)%len(models)]
				pi := (c / len(models)) % len(realPrompts)
				stream := (c+r)%2 == 1
				body := map[string]any{"model": m, "prompt": realPrompts[pi], "max_tokens": n, "temperature": 0, "stream": stream}
				if stream {
					body["stream_options"] = map[string]any{"include_usage": true}
				}
				code, b := post(t, rs.url+"/v1/completions", body)
				var text, finish string
				var usage *usageJSON
				if code == http.StatusOK && stream {
					text, finish, usage = streamText(t, b, false)
				} else if code == http.StatusOK {
					resp := decode[completionResponse](t, b)
					text, finish, usage = resp.Choices[0].Text, *resp.Choices[0].FinishReason, resp.Usage
				}
				wantFinish := "length"
				if counts[m][pi] < n {
					wantFinish = "stop"
				}
				msg := ""
				switch {
				case code != http.StatusOK:
					msg = fmt.Sprintf("status %d %s", code, b)
				case text != want[m][pi]:
					msg = fmt.Sprintf("text %q, want %q", text, want[m][pi])
				case finish != wantFinish:
					msg = fmt.Sprintf("finish_reason %q, want %q", finish, wantFinish)
				case usage == nil || usage.PromptTokens != promptLen(realPrompts[pi]) || usage.CompletionTokens != counts[m][pi]:
					msg = fmt.Sprintf("usage %+v, want %d prompt and %d completion tokens", usage, promptLen(realPrompts[pi]), counts[m][pi])
				}
				if msg != "" {
					mu.Lock()
					errs = append(errs, fmt.Sprintf("client %d round %d, model %s, prompt %d, stream %v: %s", c, r, m, pi, stream, msg))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for _, e := range errs {
		t.Error(e)
	}
	st := rs.eng.Stats()
	most := 0
	for size, c := range st.BatchSizes {
		if c > 0 {
			most = size
		}
	}
	if most < 2 {
		t.Errorf("the largest decoding batch had %d rows (%v): the clients were not batched together", most, st.BatchSizes)
	}
}

// TestDisconnectStopsGeneration closes a stream after its first event: the
// engine must stop that sequence well before max_tokens, and the server
// go on serving.
func TestDisconnectStopsGeneration(t *testing.T) {
	rs := newRealSetup(t, Options{MaxTokens: 4000})
	ctx, cancel := context.WithCancel(context.Background())
	body := strings.NewReader(`{"model": "a", "prompt": "Once upon a time", "max_tokens": 4000, "temperature": 0, "stream": true}`)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, rs.url+"/v1/completions", body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if _, err := resp.Body.Read(buf); err != nil || !strings.HasPrefix(string(buf), "data: ") {
		t.Fatalf("first read: %q, %v", buf, err)
	}
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := rs.eng.Stats()
		if st.Active == 0 && st.Queued == 0 {
			if got := st.Adapters["a"].CompletionTokens; got >= 4000 {
				t.Errorf("the engine generated %d tokens for a client that went away", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sequence of a client that went away still runs: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if code, b := post(t, rs.url+"/v1/completions", map[string]any{"model": "a", "prompt": "hi", "max_tokens": 2}); code != http.StatusOK {
		t.Errorf("after the disconnect: %d %s", code, b)
	}
}

// TestLoadRealAdapters loads adapters over HTTP into the real engine: one
// of another base is refused with what does not fit, and one that fits
// answers as the engine's own.
func TestLoadRealAdapters(t *testing.T) {
	cfg := models.LlamaTiny()
	cfg.Hidden, cfg.Intermediate = 24, 48 // another base: hidden 24, not 16
	other := servetest.New(t, cfg, "")
	rs := newRealSetup(t, Options{AdapterRoot: filepath.Dir(other.Dir)})
	before := len(rs.eng.Adapters())
	code, b := post(t, rs.url+"/v1/load_lora_adapter", map[string]any{"lora_name": "other", "lora_path": other.LoRA4})
	if msg := decode[errorBody](t, b).Error.Message; code != http.StatusBadRequest || !strings.Contains(msg, "does not fit") {
		t.Errorf("an adapter of another base: %d %q, want 400 saying what does not fit", code, msg)
	}
	if len(rs.eng.Adapters()) != before {
		t.Errorf("the refused adapter was loaded")
	}
	code, b = post(t, rs.url+"/v1/load_lora_adapter", map[string]any{"lora_name": "b2", "lora_path": rs.f.LoRA8})
	if code != http.StatusOK {
		t.Fatalf("load b2: %d %s", code, b)
	}
	loaded := decode[modelJSON](t, b)
	var hashB string
	for _, a := range rs.eng.Adapters() {
		if a.Name == "b" {
			hashB = a.Hash
		}
	}
	if loaded.Hash == "" || loaded.Hash != hashB || loaded.Parent == nil || *loaded.Parent != "base" || loaded.Rank != 8 {
		t.Errorf("b2, the same folder as b: got %+v, want b's hash %s, rank 8, parent base", loaded, hashB)
	}
	wantB, _ := rs.expected(t, "b", realPrompts[:1], 6)
	code, b = post(t, rs.url+"/v1/completions", map[string]any{"model": "b2", "prompt": realPrompts[0], "max_tokens": 6, "temperature": 0})
	if code != http.StatusOK || decode[completionResponse](t, b).Choices[0].Text != wantB[0] {
		t.Errorf("b2: %d %s, want text %q", code, b, wantB[0])
	}
}

// TestReloadUnderLoad reloads an adapter in place, between two versions,
// and loads and unloads another, while clients stream from it: every
// request must succeed with the whole text of one version or the other,
// never a mix, and requests after the last reload get its version.
func TestReloadUnderLoad(t *testing.T) {
	rs := newRealSetup(t, Options{AdapterRoot: fixtureRoot})
	const n = 8
	wantA, _ := rs.expected(t, "a", realPrompts, n)
	wantB, _ := rs.expected(t, "b", realPrompts, n)
	if code, b := post(t, rs.url+"/v1/load_lora_adapter", map[string]any{"lora_name": "x", "lora_path": "lora4"}); code != http.StatusOK {
		t.Fatalf("load x: %d %s", code, b)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	seen := map[string]int{}
	fail := func(format string, args ...any) {
		mu.Lock()
		errs = append(errs, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	stop := make(chan struct{})
	for c := range 8 {
		wg.Go(func() {
			for r := 0; ; r++ {
				select {
				case <-stop:
					return
				default:
				}
				pi := (c + r) % len(realPrompts)
				stream := r%2 == 0
				code, b := post(t, rs.url+"/v1/completions", map[string]any{"model": "x", "prompt": realPrompts[pi], "max_tokens": n, "temperature": 0, "stream": stream})
				if code != http.StatusOK {
					fail("client %d request %d: %d %s", c, r, code, b)
					return
				}
				var text string
				if stream {
					text, _, _ = streamText(t, b, false)
				} else {
					text = decode[completionResponse](t, b).Choices[0].Text
				}
				mu.Lock()
				switch text {
				case wantA[pi]:
					seen["lora4"]++
				case wantB[pi]:
					seen["lora8"]++
				default:
					errs = append(errs, fmt.Sprintf("client %d request %d: %q is neither version's text (%q, %q)", c, r, text, wantA[pi], wantB[pi]))
				}
				mu.Unlock()
			}
		})
	}
	// Each reload waits until a client has seen the version it loaded
	// (requests admitted before it may still finish on the old one), so
	// that both versions are served however slow the machine is.
	versions := []string{"lora8", "lora4"}
	for i := range 6 {
		time.Sleep(30 * time.Millisecond)
		v := versions[i%2]
		mu.Lock()
		before := seen[v]
		mu.Unlock()
		if code, b := post(t, rs.url+"/v1/load_lora_adapter", map[string]any{"lora_name": "x", "lora_path": v, "load_inplace": true}); code != http.StatusOK {
			fail("reload %d: %d %s", i, code, b)
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			mu.Lock()
			now, failed := seen[v], len(errs) > 0
			mu.Unlock()
			if now > before || failed {
				break
			}
			if time.Now().After(deadline) {
				fail("reload %d: no client saw %s within 30 s of loading it", i, v)
				break
			}
		}
		if code, b := post(t, rs.url+"/v1/load_lora_adapter", map[string]any{"lora_name": "y", "lora_path": "prefix"}); code != http.StatusOK {
			fail("load y %d: %d %s", i, code, b)
		}
		if code, b := post(t, rs.url+"/v1/unload_lora_adapter", map[string]any{"lora_name": "y"}); code != http.StatusOK {
			fail("unload y %d: %d %s", i, code, b)
		}
	}
	close(stop)
	wg.Wait()
	for _, e := range errs {
		t.Error(e)
	}
	if seen["lora4"] == 0 || seen["lora8"] == 0 {
		t.Errorf("the clients saw versions %v; want both", seen)
	}
	// The last reload was lora4.
	code, b := post(t, rs.url+"/v1/completions", map[string]any{"model": "x", "prompt": realPrompts[0], "max_tokens": n, "temperature": 0})
	if code != http.StatusOK || decode[completionResponse](t, b).Choices[0].Text != wantA[0] {
		t.Errorf("after the last reload (lora4): %d %s, want %q", code, b, wantA[0])
	}
}

// TestSamplingSeed samples on the real engine: the same seed gives the
// same text, another seed another, and neither is the greedy text.
func TestSamplingSeed(t *testing.T) {
	rs := newRealSetup(t, Options{})
	text := func(body map[string]any) string {
		body["model"], body["prompt"], body["max_tokens"] = "a", realPrompts[0], 12
		code, b := post(t, rs.url+"/v1/completions", body)
		if code != http.StatusOK {
			t.Fatalf("%v: %d %s", body, code, b)
		}
		return decode[completionResponse](t, b).Choices[0].Text
	}
	greedy := text(map[string]any{"temperature": 0})
	s1 := text(map[string]any{"temperature": 1.5, "seed": 1})
	if again := text(map[string]any{"temperature": 1.5, "seed": 1}); again != s1 {
		t.Errorf("seed 1 gave %q, then %q", s1, again)
	}
	if s2 := text(map[string]any{"temperature": 1.5, "seed": 2}); s2 == s1 {
		t.Errorf("seeds 1 and 2 both gave %q", s1)
	}
	if s1 == greedy {
		t.Errorf("sampling gave the greedy text %q", greedy)
	}
}
