package main

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/tokenizer"
)

// TestServeDoRA starts "peftonnx serve --dora" with a DoRA and a LoRA
// adapter: a completion of each is the text of its adapted model's greedy
// tokens. (Without --dora the DoRA adapter is refused: TestServeErrors.)
func TestServeDoRA(t *testing.T) {
	f := serveFixture(t)
	tk, err := tokenizer.Load(filepath.Join(f.Dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	_, url, stderr := startServe(t, f.Base, "--dora", "--adapter", "d="+f.DoRA, "--adapter", "a="+f.LoRA4, "--addr", "127.0.0.1:0", "--threads", "1")
	const prompt, n = "Once upon a time", 6
	ids, err := tk.Encode(prompt, true)
	if err != nil {
		t.Fatal(err)
	}
	texts := map[string]string{}
	for name, path := range map[string]string{"d": f.DoRA, "a": f.LoRA4} {
		toks := f.Reference(t, path, [][]int64{ids}, n, []int64{tk.EOS()})[0]
		all, _ := tk.Decode(append(append([]int64{}, ids...), toks...), true)
		promptText, _ := tk.Decode(ids, true)
		want, ok := strings.CutPrefix(all, promptText)
		if !ok {
			t.Fatalf("the prompt decodes to %q, not a prefix of %q", promptText, all)
		}
		body := `{"model": "` + name + `", "prompt": "` + prompt + `", "max_tokens": 6, "temperature": 0}`
		req, _ := http.NewRequest(http.MethodPost, url+"/v1/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer env-key")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var got struct {
			Choices []struct{ Text string } `json:"choices"`
		}
		if err := json.Unmarshal(b, &got); resp.StatusCode != http.StatusOK || err != nil || len(got.Choices) != 1 {
			t.Fatalf("adapter %s: %d %s (%v); stderr:\n%s", name, resp.StatusCode, b, err, stderr)
		}
		if got.Choices[0].Text != want {
			t.Errorf("adapter %s: text %q, want %q", name, got.Choices[0].Text, want)
		}
		texts[name] = want
	}
	if texts["d"] == texts["a"] {
		t.Fatalf("the DoRA and LoRA adapters give the same text %q; the test proves nothing", texts["d"])
	}
}
