package openai

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestDoRACompletions serves a DoRA adapter over HTTP on the DoRA engine:
// clients of the base, a LoRA adapter and the DoRA adapter, streaming and
// not, at once, each get the text of their adapted model's greedy tokens.
// On an engine without DoRA, loading the adapter over HTTP is a 400 that
// says to start the server with --dora.
func TestDoRACompletions(t *testing.T) {
	rs := newSetup(t, Options{}, true)
	const n = 8
	names := []string{"base", "a", "d"}
	want := map[string][]string{}
	for _, m := range names {
		want[m], _ = rs.expected(t, m, realPrompts, n)
	}
	if slices.Equal(want["d"], want["base"]) || slices.Equal(want["d"], want["a"]) {
		t.Fatalf("the DoRA adapter's text is the base's or the LoRA adapter's; the fixture proves nothing")
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	for c := range 2 * len(names) * len(realPrompts) {
		m, pi, stream := names[c%len(names)], c/len(names)%len(realPrompts), c%2 == 1
		wg.Go(func() {
			code, b := post(t, rs.url+"/v1/completions", map[string]any{"model": m, "prompt": realPrompts[pi], "max_tokens": n, "temperature": 0, "stream": stream})
			var text string
			if code == http.StatusOK && stream {
				text, _, _ = streamText(t, b, false)
			} else if code == http.StatusOK {
				text = decode[completionResponse](t, b).Choices[0].Text
			}
			if code != http.StatusOK || text != want[m][pi] {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("model %s, prompt %d, stream %v: %d %q, want %q", m, pi, stream, code, text, want[m][pi]))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(errs)
	for _, e := range errs {
		t.Error(e)
	}

	plain := newRealSetup(t, Options{AdapterRoot: fixtureRoot})
	code, b := post(t, plain.url+"/v1/load_lora_adapter", map[string]any{"lora_name": "d", "lora_path": plain.f.DoRA})
	if msg := decode[errorBody](t, b).Error.Message; code != http.StatusBadRequest || !strings.Contains(msg, "--dora") {
		t.Errorf("loading a DoRA adapter without DoRA: %d %q, want 400 saying to start the server with --dora", code, msg)
	}
}
