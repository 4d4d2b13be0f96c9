package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// repoRoot is the project's root, from this package's folder.
const repoRoot = "../.."

// openAIModule returns the file URL of the pinned openai npm package,
// installing it (scripts/install-npm-client.sh) where it is missing. The
// test skips only where node or npm cannot be had.
func openAIModule(t *testing.T) (node, module string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed (Debian's nodejs; scripts/install-test-deps.sh installs it), so the openai npm client cannot run")
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	index := filepath.Join(root, ".tools", "npm-openai", "node_modules", "openai", "index.mjs")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The script keeps an install of the pinned version and replaces another.
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "install-npm-client.sh"))
	if out, err := cmd.CombinedOutput(); err != nil {
		if _, npmErr := exec.LookPath("npm"); npmErr != nil {
			t.Skipf("npm is not installed, so the openai npm package cannot be: %s", out)
		}
		t.Skipf("scripts/install-npm-client.sh could not install the openai npm package (no registry?): %v: %s", err, out)
	}
	if _, err := os.Stat(index); err != nil {
		t.Fatalf("scripts/install-npm-client.sh left no %s: %v", index, err)
	}
	return node, (&url.URL{Scheme: "file", Path: index}).String()
}

// nodeReport is what client.mjs prints.
type nodeReport struct {
	Models []struct {
		ID, Kind, Hash string
		Parent         *string
	}
	Completions map[string]struct {
		Text, Finish, Object, Model string
		Usage                       usageJSON
	}
	Streams map[string]struct {
		Text, Finish string
		Usage        *usageJSON
		Chunks       int
	}
	Chat struct {
		Text, Role, Finish string
		Usage              usageJSON
	}
	ChatStream struct{ Text, Finish string }
	Concurrent []struct {
		Model  string
		Prompt int
		Text   string
		Usage  usageJSON
	}
	Errors map[string]struct {
		Status        int
		Message, Type string
	}
}

// TestOpenAINodeClient drives the server on the real engine with the
// official openai npm package: models, completions and streams on the
// base and on each adapter, chat and its stream, 16 clients at once, and
// errors, each checked against the merged (or prefixed) model.
func TestOpenAINodeClient(t *testing.T) {
	node, module := openAIModule(t)
	rs := newRealSetup(t, Options{APIKey: "node-key", MaxTokens: 64})
	const n = 6
	models := []string{"base", "a", "b", "p"}
	cfg, _ := json.Marshal(map[string]any{"models": models, "prompts": realPrompts, "max_tokens": n, "clients": 16})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("testdata", "client", "client.mjs"))
	cmd.Env = append(os.Environ(), "OPENAI_MODULE="+module, "PEFTONNX_URL="+rs.url+"/v1", "PEFTONNX_API_KEY=node-key", "CLIENT_CONFIG="+string(cfg))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client.mjs: %v\n%s", err, stderr.String())
	}
	var rep nodeReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("client.mjs printed %q: %v", out, err)
	}

	infos := rs.eng.Adapters()
	if len(rep.Models) != len(infos) {
		t.Fatalf("models.list gave %+v, want %d models", rep.Models, len(infos))
	}
	for i, m := range rep.Models {
		wantID, wantParent := infos[i].Name, "base"
		if i == 0 {
			wantID = "base"
		}
		if m.ID != wantID || m.Hash != infos[i].Hash || (i == 0) != (m.Parent == nil) || (i > 0 && *m.Parent != wantParent) {
			t.Errorf("models.list entry %d: %+v, want id %s, hash %s, parent %s", i, m, wantID, infos[i].Hash, wantParent)
		}
	}

	want := map[string][]string{}
	counts := map[string][]int{}
	for _, m := range models {
		want[m], counts[m] = rs.expected(t, m, realPrompts, n)
	}
	promptIDs, _ := rs.tok.Encode(realPrompts[0], true)
	for _, m := range models {
		c, s := rep.Completions[m], rep.Streams[m]
		if c.Text != want[m][0] || c.Object != "text_completion" || c.Model != m {
			t.Errorf("%s: completions.create gave %+v, want text %q", m, c, want[m][0])
		}
		if c.Usage.PromptTokens != len(promptIDs) || c.Usage.CompletionTokens != counts[m][0] || c.Usage.TotalTokens != len(promptIDs)+counts[m][0] {
			t.Errorf("%s: usage %+v, want %d + %d", m, c.Usage, len(promptIDs), counts[m][0])
		}
		if s.Text != c.Text || s.Finish != c.Finish || s.Usage == nil || *s.Usage != c.Usage || s.Chunks < 2 {
			t.Errorf("%s: the stream gave %+v, without streaming %+v", m, s, c)
		}
	}
	if rep.Chat.Role != "assistant" || rep.Chat.Text == "" || rep.ChatStream.Text != rep.Chat.Text || rep.ChatStream.Finish != rep.Chat.Finish {
		t.Errorf("chat gave %+v, its stream %+v", rep.Chat, rep.ChatStream)
	}
	rendered, err := rs.srv.chatPrompt([]chatMessage{{Role: "user", Content: json.RawMessage(`"` + realPrompts[0] + `"`)}})
	if err != nil || rep.Chat.Usage.PromptTokens != len(rendered) {
		t.Errorf("chat usage %+v, want %d prompt tokens (%v)", rep.Chat.Usage, len(rendered), err)
	}
	if len(rep.Concurrent) != 16 {
		t.Errorf("got %d concurrent answers, want 16", len(rep.Concurrent))
	}
	for i, c := range rep.Concurrent {
		if c.Text != want[c.Model][c.Prompt] || c.Usage.CompletionTokens != counts[c.Model][c.Prompt] {
			t.Errorf("concurrent client %d (%s, prompt %d): %q, %+v, want %q", i, c.Model, c.Prompt, c.Text, c.Usage, want[c.Model][c.Prompt])
		}
	}
	for name, w := range map[string]struct {
		status     int
		typ, inMsg string
	}{
		"unknown_model": {404, "NotFoundError", `"no-such-adapter" is not loaded; loaded: base, a, b, p`},
		"max_tokens":    {400, "BadRequestError", "over the server's limit of 64"},
		"wrong_type":    {400, "BadRequestError", "temperature: want a number, got string"},
		"bad_key":       {401, "AuthenticationError", "not this server's"},
	} {
		got := rep.Errors[name]
		if got.Status != w.status || got.Type != w.typ || !strings.Contains(got.Message, w.inMsg) {
			t.Errorf("%s: got %+v, want %d %s with %q", name, got, w.status, w.typ, w.inMsg)
		}
	}
}
