package openai

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadInput sends each kind of bad request and checks its status and
// message, and that the server still answers a good request after it.
func TestBadInput(t *testing.T) {
	eng := newFake(t)
	_, url := startServer(t, eng, Options{ChatTemplate: tinyLlamaChatTemplate(t), MaxTokens: 64, MaxPromptTokens: 50, MaxBodyBytes: 4096})
	long := strings.Repeat("word ", 100)
	tests := []struct {
		name, path string
		body       any
		status     int
		want       string // in the error message
		param      string
	}{
		{"truncated JSON", "/v1/completions", `{"model": "base", "prompt": "hi`, 400, "not complete JSON", ""},
		{"truncated object", "/v1/completions", `{"model": "base"`, 400, "not complete JSON", ""},
		{"not JSON", "/v1/completions", `model=base`, 400, "not valid JSON", ""},
		{"empty body", "/v1/completions", ``, 400, "empty", ""},
		{"an array", "/v1/completions", `[1]`, 400, "must be a JSON object", ""},
		{"trailing data", "/v1/completions", `{"model": "base", "prompt": "a"} {}`, 400, "more after its JSON object", ""},
		{"max_tokens a string", "/v1/completions", `{"model": "base", "prompt": "a", "max_tokens": "5"}`, 400, "max_tokens: want an integer, got string", "max_tokens"},
		{"max_tokens a fraction", "/v1/completions", `{"model": "base", "prompt": "a", "max_tokens": 1.5}`, 400, "max_tokens: want an integer", "max_tokens"},
		{"temperature a string", "/v1/completions", `{"model": "base", "prompt": "a", "temperature": "hot"}`, 400, "temperature: want a number, got string", "temperature"},
		{"stream a number", "/v1/completions", `{"model": "base", "prompt": "a", "stream": 1}`, 400, "stream: want a boolean", "stream"},
		{"model a number", "/v1/completions", `{"model": 3, "prompt": "a"}`, 400, "model: want a string", "model"},
		{"unknown field", "/v1/completions", `{"model": "base", "prompt": "a", "max_tokenz": 3}`, 400, `unknown field "max_tokenz" (fields there: model, max_tokens,`, "max_tokenz"},
		{"unknown field in a message", "/v1/chat/completions", `{"model": "base", "messages": [{"role": "user", "content": "a"}, {"role": "user", "contnet": "b"}]}`, 400, `unknown field "messages[1].contnet" (fields there: role, content, name)`, "messages[1].contnet"},
		{"unknown field in stream_options", "/v1/completions", `{"model": "base", "prompt": "a", "stream": true, "stream_options": {"usage": true}}`, 400, `unknown field "stream_options.usage" (fields there: include_usage)`, "stream_options.usage"},
		{"prompt an object", "/v1/completions", `{"model": "base", "prompt": {"text": "a"}}`, 400, "prompt: want a string", "prompt"},
		{"prompt ids out of vocabulary", "/v1/completions", `{"model": "base", "prompt": [1, 99999]}`, 400, "outside the vocabulary", "prompt"},
		{"prompt ids negative", "/v1/completions", `{"model": "base", "prompt": [[1, -2]]}`, 400, "outside the vocabulary", "prompt[0]"},
		{"prompt missing", "/v1/completions", `{"model": "base"}`, 400, "prompt is required", "prompt"},
		{"prompt too long", "/v1/completions", map[string]any{"model": "base", "prompt": long}, 400, "over the server's limit of 50", "prompt"},
		{"model missing", "/v1/completions", `{"prompt": "a"}`, 400, "model is required", "model"},
		{"max_tokens over the limit", "/v1/completions", `{"model": "base", "prompt": "a", "max_tokens": 65}`, 400, "max_tokens 65 is over the server's limit of 64", "max_tokens"},
		{"max_tokens zero", "/v1/completions", `{"model": "base", "prompt": "a", "max_tokens": 0}`, 400, "at least 1", "max_tokens"},
		{"temperature too high", "/v1/completions", `{"model": "base", "prompt": "a", "temperature": 3}`, 400, "temperature must be in [0, 2]", "temperature"},
		{"top_p zero", "/v1/completions", `{"model": "base", "prompt": "a", "top_p": 0}`, 400, "top_p must be in (0, 1]", "top_p"},
		{"top_k negative", "/v1/completions", `{"model": "base", "prompt": "a", "top_k": -3}`, 400, "top_k must be", "top_k"},
		{"n of 2", "/v1/completions", `{"model": "base", "prompt": "a", "n": 2}`, 400, "n must be 1", "n"},
		{"stop a number", "/v1/completions", `{"model": "base", "prompt": "a", "stop": 5}`, 400, "stop: want a string or an array of strings, got a number", "stop"},
		{"stop empty", "/v1/completions", `{"model": "base", "prompt": "a", "stop": [""]}`, 400, "stop[0]", "stop"},
		{"stream_options without stream", "/v1/completions", `{"model": "base", "prompt": "a", "stream_options": {"include_usage": true}}`, 400, "only allowed with stream", "stream_options"},
		{"logprobs", "/v1/completions", `{"model": "base", "prompt": "a", "logprobs": 2}`, 400, "logprobs is not supported", "logprobs"},
		{"unknown model", "/v1/completions", `{"model": "nosuch", "prompt": "a"}`, 404, `model "nosuch" is not loaded; loaded: base`, "model"},
		{"unknown model, chat", "/v1/chat/completions", `{"model": "nosuch", "messages": [{"role": "user", "content": "a"}]}`, 404, `"nosuch" is not loaded`, "model"},
		{"messages empty", "/v1/chat/completions", `{"model": "base", "messages": []}`, 400, "messages is required", "messages"},
		{"a role of the wrong type", "/v1/chat/completions", `{"model": "base", "messages": [{"role": "user", "content": "a"}, {"role": 5, "content": "b"}]}`, 400, "messages[1].role: want a string, got number", "messages[1].role"},
		{"messages a string", "/v1/chat/completions", `{"model": "base", "messages": "hi"}`, 400, "messages: want an array", "messages"},
		{"role unknown", "/v1/chat/completions", `{"model": "base", "messages": [{"role": "robot", "content": "a"}]}`, 400, `messages[0].role "robot"`, "messages[0].role"},
		{"content a number", "/v1/chat/completions", `{"model": "base", "messages": [{"role": "user", "content": 5}]}`, 400, "messages[0].content: want a string", "messages[0].content"},
		{"image content", "/v1/chat/completions", `{"model": "base", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}`, 400, "only parts", "messages[0].content"},
		{"tools", "/v1/chat/completions", `{"model": "base", "messages": [{"role": "user", "content": "a"}], "tools": []}`, 400, "tools are not supported", "tools"},
		{"body too large", "/v1/completions", map[string]any{"model": "base", "prompt": strings.Repeat("a", 5000)}, 413, "over the limit of 4096 bytes", ""},
		{"unknown endpoint", "/v1/nosuch", `{}`, 404, "no endpoint /v1/nosuch", ""},
	}
	for _, tc := range tests {
		code, b := post(t, url+tc.path, tc.body)
		e := decode[errorBody](t, b)
		if code != tc.status || !strings.Contains(e.Error.Message, tc.want) {
			t.Errorf("%s: got %d %q, want %d with %q", tc.name, code, e.Error.Message, tc.status, tc.want)
		}
		if got := ""; e.Error.Param != nil || tc.param != "" {
			if e.Error.Param != nil {
				got = *e.Error.Param
			}
			if got != tc.param {
				t.Errorf("%s: param %q, want %q", tc.name, got, tc.param)
			}
		}
		if code, b := post(t, url+"/v1/completions", map[string]any{"model": "base", "prompt": "a", "max_tokens": 2}); code != http.StatusOK {
			t.Fatalf("after %s: a good request got %d %s", tc.name, code, b)
		}
	}
	// A GET where POST is wanted.
	code, b := get(t, url+"/v1/completions")
	if code != http.StatusMethodNotAllowed || !strings.Contains(string(b), "wants POST") {
		t.Errorf("GET /v1/completions: %d %s", code, b)
	}
}

// TestAuth checks the API key on every endpoint and the admin key on
// load and unload.
func TestAuth(t *testing.T) {
	eng := newFake(t)
	root := t.TempDir()
	os.Mkdir(filepath.Join(root, "a"), 0o755)
	_, url := startServer(t, eng, Options{APIKey: "user-key", AdminKey: "admin-key", AdapterRoot: root})
	user := []string{"Authorization", "Bearer user-key"}
	admin := []string{"Authorization", "Bearer admin-key"}
	for _, path := range []string{"/v1/models", "/metrics", "/healthz", "/v1/models/base"} {
		if code, _ := get(t, url+path); code != http.StatusUnauthorized {
			t.Errorf("GET %s without a key: %d, want 401", path, code)
		}
		if code, _ := get(t, url+path, "Authorization", "Bearer wrong"); code != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong key: %d, want 401", path, code)
		}
		if code, b := get(t, url+path, user...); code != http.StatusOK {
			t.Errorf("GET %s with the key: %d %s", path, code, b)
		}
	}
	body := map[string]any{"model": "base", "prompt": "a", "max_tokens": 1}
	if code, b := post(t, url+"/v1/completions", body); code != http.StatusUnauthorized || !strings.Contains(string(b), "Bearer") {
		t.Errorf("completions without a key: %d %s", code, b)
	}
	if code, _ := post(t, url+"/v1/completions", body, user...); code != http.StatusOK {
		t.Errorf("completions with the key: %d", code)
	}
	load := map[string]any{"lora_name": "a", "lora_path": "a"}
	if code, b := post(t, url+"/v1/load_lora_adapter", load, user...); code != http.StatusUnauthorized || !strings.Contains(string(b), "admin key") {
		t.Errorf("load with the user's key: %d %s", code, b)
	}
	if code, b := post(t, url+"/v1/load_lora_adapter", load, admin...); code != http.StatusOK {
		t.Errorf("load with the admin key: %d %s", code, b)
	}
	if code, _ := post(t, url+"/v1/unload_lora_adapter", map[string]any{"lora_name": "a"}, user...); code != http.StatusUnauthorized {
		t.Errorf("unload with the user's key: %d", code)
	}
	if code, b := post(t, url+"/v1/unload_lora_adapter", map[string]any{"lora_name": "a"}, admin...); code != http.StatusOK {
		t.Errorf("unload with the admin key: %d %s", code, b)
	}
}

// TestLoadUnload checks vLLM's load and unload endpoints, the adapter
// root, and that /v1/models shows what is loaded.
func TestLoadUnload(t *testing.T) {
	eng := newFake(t)
	base := t.TempDir()
	root := filepath.Join(base, "adapters")
	outside := filepath.Join(base, "elsewhere")
	for _, d := range []string{filepath.Join(root, "good"), filepath.Join(root, "mismatch"), filepath.Join(root, "leaky"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(outside, "adapter_model.safetensors"), []byte("secret"), 0o644)
	os.Symlink(outside, filepath.Join(root, "link-out"))
	os.Symlink(filepath.Join(outside, "adapter_model.safetensors"), filepath.Join(root, "leaky", "adapter_model.safetensors"))
	os.Symlink(filepath.Join(root, "good"), filepath.Join(root, "link-in"))
	os.MkdirAll(filepath.Join(root, "nested", "sub"), 0o755)
	os.Symlink(outside, filepath.Join(root, "nested", "sub", "weights"))
	_, url := startServer(t, eng, Options{AdapterRoot: root})

	tests := []struct {
		name   string
		body   any
		status int
		want   string
	}{
		{"relative path", map[string]any{"lora_name": "A", "lora_path": "good"}, 200, ""},
		{"same name again", map[string]any{"lora_name": "A", "lora_path": "good"}, 409, "already loaded"},
		{"same name in place", map[string]any{"lora_name": "A", "lora_path": filepath.Join(root, "good"), "load_inplace": true}, 200, ""},
		{"a link inside the root", map[string]any{"lora_name": "B", "lora_path": "link-in"}, 200, ""},
		{"dot-dot escape", map[string]any{"lora_name": "C", "lora_path": "../elsewhere"}, 403, "outside the adapter root"},
		{"absolute path outside", map[string]any{"lora_name": "C", "lora_path": outside}, 403, "outside the adapter root"},
		{"missing path outside", map[string]any{"lora_name": "C", "lora_path": "/nonexistent/x"}, 403, "outside the adapter root"},
		{"a link out", map[string]any{"lora_name": "C", "lora_path": "link-out"}, 403, "through a symlink"},
		{"a file linked out", map[string]any{"lora_name": "C", "lora_path": "leaky"}, 403, "links to"},
		{"a nested link out", map[string]any{"lora_name": "C", "lora_path": "nested"}, 403, "sub/weights links to"},
		{"missing path", map[string]any{"lora_name": "C", "lora_path": "nosuch"}, 400, "does not exist"},
		{"adapter for another base", map[string]any{"lora_name": "C", "lora_path": "mismatch"}, 400, "does not fit the base model: module model.layers.0.attn.q_proj"},
		{"no name", map[string]any{"lora_path": "good"}, 400, "lora_name is required"},
		{"the base's name", map[string]any{"lora_name": "base", "lora_path": "good"}, 400, "the base model's name"},
		{"a name with a space", map[string]any{"lora_name": "a b", "lora_path": "good"}, 400, "spaces"},
		{"no path", map[string]any{"lora_name": "C"}, 400, "lora_path is required"},
		{"wrong type", `{"lora_name": "C", "lora_path": "good", "load_inplace": "yes"}`, 400, "load_inplace: want a boolean"},
	}
	for _, tc := range tests {
		code, b := post(t, url+"/v1/load_lora_adapter", tc.body)
		if code != tc.status || (tc.want != "" && !strings.Contains(string(b), tc.want)) {
			t.Errorf("%s: got %d %s, want %d with %q", tc.name, code, b, tc.status, tc.want)
		}
	}
	if _, ok := eng.adapters["C"]; ok {
		t.Errorf("a refused adapter was loaded")
	}

	// /v1/models lists the base first, then A and B with parent = base.
	code, b := get(t, url+"/v1/models")
	if code != http.StatusOK {
		t.Fatalf("models: %d %s", code, b)
	}
	list := decode[struct {
		Object string      `json:"object"`
		Data   []modelJSON `json:"data"`
	}](t, b)
	if len(list.Data) != 3 || list.Data[0].ID != "base" || list.Data[0].Parent != nil || list.Data[1].ID != "A" || list.Data[2].ID != "B" {
		t.Fatalf("models: %s", b)
	}
	for _, m := range list.Data[1:] {
		if m.Parent == nil || *m.Parent != "base" || m.Hash != eng.adapters[m.ID].Hash || m.Kind != "lora" || m.Object != "model" {
			t.Errorf("model %s: %+v", m.ID, m)
		}
	}
	// A request for A reaches the engine under A's name.
	if code, b := post(t, url+"/v1/completions", map[string]any{"model": "A", "prompt": "a", "max_tokens": 1}); code != 200 || eng.reqs[len(eng.reqs)-1].Adapter != "A" {
		t.Errorf("completion on A: %d %s", code, b)
	}
	if code, b := get(t, url+"/v1/models/A"); code != 200 || decode[modelJSON](t, b).ID != "A" {
		t.Errorf("GET /v1/models/A: %d %s", code, b)
	}

	for _, tc := range []struct {
		name   string
		body   any
		status int
		want   string
	}{
		{"unload A", map[string]any{"lora_name": "A"}, 200, `"deleted":true`},
		{"unload A again", map[string]any{"lora_name": "A"}, 404, `"A" is not loaded; loaded: base, B`},
		{"unload the base", map[string]any{"lora_name": "base"}, 400, "the base model's name"},
		{"unload by id", map[string]any{"lora_int_id": 3}, 400, "lora_int_id is not supported"},
	} {
		code, b := post(t, url+"/v1/unload_lora_adapter", tc.body)
		if code != 200 {
			b = []byte(decode[errorBody](t, b).Error.Message)
		}
		if code != tc.status || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s: got %d %s, want %d with %q", tc.name, code, b, tc.status, tc.want)
		}
	}
	if code, b := post(t, url+"/v1/completions", map[string]any{"model": "A", "prompt": "a"}); code != 404 {
		t.Errorf("completion on unloaded A: %d %s", code, b)
	}

	// Without a root, loading is off.
	_, url2 := startServer(t, eng, Options{})
	if code, b := post(t, url2+"/v1/load_lora_adapter", map[string]any{"lora_name": "D", "lora_path": filepath.Join(root, "good")}); code != 403 || !strings.Contains(string(b), "--adapter-root") {
		t.Errorf("load without a root: %d %s", code, b)
	}
}
