package openai

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// startServer serves eng over HTTP on 127.0.0.1 for the test.
func startServer(t testing.TB, eng Engine, opts Options) (*Server, string) {
	t.Helper()
	if opts.Tokenizer == nil {
		opts.Tokenizer = tinyLlamaTokenizer(t)
	}
	s, err := New(eng, opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, ts.URL
}

// post sends body (a string as is, else as JSON) and returns the status and the body.
func post(t testing.TB, url string, body any, header ...string) (int, []byte) {
	t.Helper()
	var data []byte
	if s, ok := body.(string); ok {
		data = []byte(s)
	} else {
		var err error
		if data, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func get(t testing.TB, url string, header ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func decode[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("response %q: %v", b, err)
	}
	return v
}

// events splits a server-sent event stream into its data lines; it fails
// the test unless the stream ends with [DONE].
func events(t testing.TB, b []byte) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("stream line %q is not data", line)
		}
		out = append(out, data)
	}
	if len(out) == 0 || out[len(out)-1] != "[DONE]" {
		t.Fatalf("stream %q does not end with data: [DONE]", b)
	}
	return out[:len(out)-1]
}

// streamText joins the text of a completion stream's chunks and returns
// the finish reason of its last choice chunk and the usage chunk if any.
func streamText(t testing.TB, b []byte, chat bool) (text, finish string, usage *usageJSON) {
	t.Helper()
	for _, e := range events(t, b) {
		if chat {
			c := decode[chatResponse](t, []byte(e))
			if c.Object != "chat.completion.chunk" {
				t.Errorf("chunk object %q", c.Object)
			}
			if c.Usage != nil {
				usage = c.Usage
			}
			for _, ch := range c.Choices {
				if ch.Delta.Content != nil {
					text += *ch.Delta.Content
				}
				if ch.FinishReason != nil {
					finish = *ch.FinishReason
				}
			}
			continue
		}
		c := decode[completionResponse](t, []byte(e))
		if c.Object != "text_completion" {
			t.Errorf("chunk object %q", c.Object)
		}
		if c.Usage != nil {
			usage = c.Usage
		}
		for _, ch := range c.Choices {
			text += ch.Text
			if ch.FinishReason != nil {
				finish = *ch.FinishReason
			}
		}
	}
	return text, finish, usage
}

func TestCompletion(t *testing.T) {
	eng := newFake(t)
	_, url := startServer(t, eng, Options{})
	tk := tinyLlamaTokenizer(t)
	prompt := "Once upon a time"
	promptIDs, _ := tk.Encode(prompt, true)
	for _, n := range []int{1, 5, 12} {
		code, b := post(t, url+"/v1/completions", map[string]any{"model": "base", "prompt": prompt, "max_tokens": n, "temperature": 0})
		if code != http.StatusOK {
			t.Fatalf("status %d: %s", code, b)
		}
		resp := decode[completionResponse](t, b)
		// The text is the script's first n tokens decoded after the
		// prompt: Llama's decoder strips the leading space of a text, so
		// the prompt's end is decoded with them.
		withPrompt, _ := tk.Decode(append(append([]int64{}, promptIDs...), eng.script[""][:n]...), true)
		want := strings.TrimPrefix(withPrompt, prompt)
		if len(resp.Choices) != 1 || resp.Choices[0].Text != want {
			t.Errorf("max_tokens %d: got %+v, want text %q", n, resp.Choices, want)
		}
		if f := resp.Choices[0].FinishReason; f == nil || *f != "length" {
			t.Errorf("max_tokens %d: finish_reason %v, want length", n, f)
		}
		if u := resp.Usage; u == nil || u.PromptTokens != len(promptIDs) || u.CompletionTokens != n || u.TotalTokens != n+len(promptIDs) {
			t.Errorf("max_tokens %d: usage %+v, want %d prompt and %d completion tokens", n, u, len(promptIDs), n)
		}
		if got := eng.lastPrompt(); !equalIDs(got, promptIDs) {
			t.Errorf("the engine got prompt %v, want %v", got, promptIDs)
		}
		if resp.Object != "text_completion" || resp.Model != "base" || !strings.HasPrefix(resp.ID, "cmpl-") {
			t.Errorf("got object %q model %q id %q", resp.Object, resp.Model, resp.ID)
		}
	}

	// The sampling fields reach the engine as they were given.
	code, b := post(t, url+"/v1/completions", map[string]any{"model": "base", "prompt": "a", "max_tokens": 3, "temperature": 0.7, "top_p": 0.9, "top_k": 40, "seed": 1234})
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, b)
	}
	if r := eng.reqs[len(eng.reqs)-1]; r.Temperature != 0.7 || r.TopP != 0.9 || r.TopK != 40 || r.Seed != 1234 || r.MaxTokens != 3 || r.Adapter != "" {
		t.Errorf("the engine got %+v", r)
	}
	// Defaults: OpenAI's temperature 1 and max_tokens 16.
	post(t, url+"/v1/completions", map[string]any{"model": "base", "prompt": "a"})
	if r := eng.reqs[len(eng.reqs)-1]; r.Temperature != 1 || r.TopP != 1 || r.TopK != 0 || r.MaxTokens != 16 {
		t.Errorf("defaults: the engine got %+v", r)
	}

	// Token ids as the prompt, and several prompts as choices.
	code, b = post(t, url+"/v1/completions", map[string]any{"model": "base", "prompt": [][]int64{{1, 450}, {1, 450, 4996}}, "max_tokens": 3})
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, b)
	}
	resp := decode[completionResponse](t, b)
	if len(resp.Choices) != 2 || resp.Choices[0].Index != 0 || resp.Choices[1].Index != 1 || resp.Usage.PromptTokens != 5 || resp.Usage.CompletionTokens != 6 {
		t.Errorf("two prompts: got %s", b)
	}
}

func equalIDs(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestStreamingMatches checks that a stream gives the text of the same
// request without streaming, with and without stop strings.
func TestStreamingMatches(t *testing.T) {
	eng := newFake(t)
	_, url := startServer(t, eng, Options{ChatTemplate: tinyLlamaChatTemplate(t)})
	cases := []map[string]any{
		{"max_tokens": 20},
		{"max_tokens": 30, "stop": "lazy"},                 // stops inside the script
		{"max_tokens": 30, "stop": []string{"x", "own f"}}, // a stop string across tokens
		{"max_tokens": 8, "stop": "not there"},
	}
	for _, chat := range []bool{false, true} {
		path := "/v1/completions"
		if chat {
			path = "/v1/chat/completions"
		}
		for i, c := range cases {
			body := map[string]any{"model": "base", "temperature": 0}
			for k, v := range c {
				body[k] = v
			}
			if chat {
				body["messages"] = []map[string]string{{"role": "user", "content": "Hi"}}
			} else {
				body["prompt"] = "Once upon a time"
			}
			code, b := post(t, url+path, body)
			if code != http.StatusOK {
				t.Fatalf("%s case %d: status %d: %s", path, i, code, b)
			}
			var text, finish string
			var usage *usageJSON
			if chat {
				r := decode[chatResponse](t, b)
				text, finish, usage = *r.Choices[0].Message.Content, *r.Choices[0].FinishReason, r.Usage
			} else {
				r := decode[completionResponse](t, b)
				text, finish, usage = r.Choices[0].Text, *r.Choices[0].FinishReason, r.Usage
			}
			body["stream"] = true
			body["stream_options"] = map[string]any{"include_usage": true}
			code, sb := post(t, url+path, body)
			if code != http.StatusOK {
				t.Fatalf("%s case %d stream: status %d: %s", path, i, code, sb)
			}
			stext, sfinish, susage := streamText(t, sb, chat)
			if stext != text || sfinish != finish {
				t.Errorf("%s case %d: stream gave %q (%s), without streaming %q (%s)", path, i, stext, sfinish, text, finish)
			}
			if susage == nil || *susage != *usage {
				t.Errorf("%s case %d: stream usage %+v, without streaming %+v", path, i, susage, usage)
			}
			if stop, ok := c["stop"].(string); ok && stop == "lazy" {
				if finish != "stop" || !strings.HasSuffix(scriptText[:strings.Index(scriptText, "lazy")], strings.TrimLeft(text, " ")) || strings.Contains(text, "lazy") {
					t.Errorf("%s: stop \"lazy\" gave %q (%s), want the script up to \"lazy\"", path, text, finish)
				}
			}
			if i == 2 && (finish != "stop" || !strings.HasSuffix(text, "br")) {
				t.Errorf("%s: stop \"own f\" gave %q (%s), want text ending in \"br\"", path, text, finish)
			}
		}
	}
}

func tinyLlamaChatTemplate(t *testing.T) string {
	t.Helper()
	tmpl, err := ChatTemplateFromConfig(filepath.Join(sharedDir, "tiny-llama-genai-fp16", "tokenizer_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

// TestChat checks that messages reach the engine through the model's chat
// template, encoded without added special tokens as HF does.
func TestChat(t *testing.T) {
	eng := newFake(t)
	_, url := startServer(t, eng, Options{ChatTemplate: tinyLlamaChatTemplate(t)})
	tk := tinyLlamaTokenizer(t)
	msgs := []map[string]any{
		{"role": "system", "content": "Be brief."},
		{"role": "user", "content": []map[string]string{{"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}}},
	}
	code, b := post(t, url+"/v1/chat/completions", map[string]any{"model": "base", "messages": msgs, "max_tokens": 4})
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, b)
	}
	want, _ := tk.Encode("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHello there [/INST]", false)
	if got := eng.lastPrompt(); !equalIDs(got, want) {
		t.Errorf("the engine got %v, want %v", got, want)
	}
	r := decode[chatResponse](t, b)
	if r.Object != "chat.completion" || r.Choices[0].Message.Role != "assistant" || r.Usage.PromptTokens != len(want) || r.Usage.CompletionTokens != 4 {
		t.Errorf("got %s", b)
	}
	// The template's own raise_exception is a 400 with its message.
	code, b = post(t, url+"/v1/chat/completions", map[string]any{"model": "base", "messages": []map[string]string{{"role": "user", "content": "a"}, {"role": "user", "content": "b"}}})
	if code != http.StatusBadRequest || !strings.Contains(string(b), "Conversation roles must alternate") {
		t.Errorf("two user turns: status %d %s", code, b)
	}
	// Without a template, chat says how to give one.
	_, url2 := startServer(t, eng, Options{})
	code, b = post(t, url2+"/v1/chat/completions", map[string]any{"model": "base", "messages": msgs})
	if code != http.StatusBadRequest || !strings.Contains(string(b), "--chat-template") {
		t.Errorf("no template: status %d %s", code, b)
	}
}

func TestChatTemplateFromConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "tokenizer_config.json")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	got, err := ChatTemplateFromConfig(write(`{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}`))
	if err != nil || got != "D" {
		t.Errorf("named templates: got %q, %v; want the default", got, err)
	}
	if got, err := ChatTemplateFromConfig(write(`{"bos_token": "<s>"}`)); err != nil || got != "" {
		t.Errorf("no template: got %q, %v", got, err)
	}
	if got, err := ChatTemplateFromConfig(filepath.Join(dir, "missing.json")); err != nil || got != "" {
		t.Errorf("no file: got %q, %v", got, err)
	}
	if _, err := ChatTemplateFromConfig(write(`{"chat_template": 3}`)); err == nil || !strings.Contains(err.Error(), "chat_template") {
		t.Errorf("a number: got %v", err)
	}
}
