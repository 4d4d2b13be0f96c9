package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peftonnx/peftonnx/internal/servetest"
	"github.com/peftonnx/peftonnx/models"
)

// serveFixture is the tiny LLaMA with the shared tokenizer beside it.
func serveFixture(t *testing.T) *servetest.Fixture {
	t.Helper()
	needORT(t)
	cfg := models.LlamaTiny()
	cfg.VocabSize = servetest.TinyLlamaVocab
	return servetest.New(t, cfg, filepath.Join("..", servetest.TinyLlamaTokenizerDir))
}

// TestServeChild is the server process of TestServeSIGTERM: it runs the
// command line in PEFTONNX_SERVE_CHILD and exits with its status.
func TestServeChild(t *testing.T) {
	spec := os.Getenv("PEFTONNX_SERVE_CHILD")
	if spec == "" {
		t.Skip("runs only as the child process of TestServeSIGTERM")
	}
	var args []string
	if err := json.Unmarshal([]byte(spec), &args); err != nil {
		t.Fatal(err)
	}
	os.Exit(execute(args, os.Stdout, os.Stderr))
}

// startServe starts "peftonnx serve" in a process of its own and returns
// it and its base URL once it listens.
func startServe(t *testing.T, args ...string) (*exec.Cmd, string, *strings.Builder) {
	t.Helper()
	spec, _ := json.Marshal(append([]string{"serve"}, args...))
	cmd := exec.Command(os.Args[0], "-test.run", "^TestServeChild$")
	cmd.Env = append(os.Environ(), "PEFTONNX_SERVE_CHILD="+string(spec), "PEFTONNX_API_KEY=env-key")
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if url, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				lines <- url
			}
		}
		close(lines)
	}()
	select {
	case url, ok := <-lines:
		if !ok {
			cmd.Wait()
			t.Fatalf("serve exited before listening: %s", stderr)
		}
		return cmd, url, stderr
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not listen within a minute: %s", stderr)
	}
	return nil, "", nil
}

// streamUntilFirst starts a streaming completion and returns its body
// once the first event came.
func streamUntilFirst(t *testing.T, url, body string) (io.ReadCloser, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer env-key") // --api-key from $PEFTONNX_API_KEY
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: %d %s", resp.StatusCode, b)
	}
	r := bufio.NewReader(resp.Body)
	first, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return io.NopCloser(io.MultiReader(strings.NewReader(first), r)), first
}

// TestServeSIGTERM sends SIGTERM to a server with a stream in flight:
// with a long grace period the stream finishes whole; with a short one it
// is cut with an error event; the process exits 0 both times.
func TestServeSIGTERM(t *testing.T) {
	f := serveFixture(t)
	for _, tc := range []struct {
		name, grace string
		maxTokens   int
		whole       bool
	}{
		{"finish", "60s", 1000, true},
		{"cancel", "100ms", 100000, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, url, stderr := startServe(t, f.Base, "--adapter", "a="+f.LoRA4, "--addr", "127.0.0.1:0", "--threads", "1",
				"--max-tokens", "100000", "--shutdown-grace", tc.grace)
			body, _ := streamUntilFirst(t, url, fmt.Sprintf(`{"model": "a", "prompt": "Once upon a time", "temperature": 0, "stream": true, "max_tokens": %d}`, tc.maxTokens))
			resp, err := http.Get(url + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("without the key from $PEFTONNX_API_KEY: %d, want 401", resp.StatusCode)
			}
			start := time.Now()
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			rest, _ := io.ReadAll(body)
			text := string(rest)
			whole := strings.Contains(text, `"finish_reason":"length"`) && strings.HasSuffix(text, "data: [DONE]\n\n") && !strings.Contains(text, `"error"`)
			if whole != tc.whole {
				t.Errorf("the stream in flight: whole %v, want %v: ...%.300s", whole, tc.whole, text[max(0, len(text)-300):])
			}
			if !tc.whole && !strings.Contains(text, "cancelled") {
				t.Errorf("the cut stream does not say why: ...%.300s", text[max(0, len(text)-300):])
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("serve exited with %v after SIGTERM, want status 0; stderr:\n%s", err, stderr)
			}
			if !tc.whole && time.Since(start) > 20*time.Second {
				t.Errorf("shutting down with a grace of %s took %s", tc.grace, time.Since(start))
			}
			if !strings.Contains(stderr.String(), "shutting down") || !strings.Contains(stderr.String(), "msg=stopped") {
				t.Errorf("stderr lacks the shutdown log lines:\n%s", stderr)
			}
		})
	}
}

// TestServeErrors checks that serve refuses what it cannot serve, in one
// line, before it listens.
func TestServeErrors(t *testing.T) {
	f := serveFixture(t)
	other := t.TempDir()
	tests := []struct {
		reason string
		args   []string
		code   int
		parts  []string
	}{
		{"no model", []string{"serve"}, 2, []string{"want one MODEL"}},
		{"bad --adapter", []string{"serve", f.Base, "--adapter", "nopath"}, 2, []string{"want NAME=PATH"}},
		{"bad --log-format", []string{"serve", f.Base, "--log-format", "xml"}, 2, []string{"--log-format must be text or json"}},
		{"zero --max-tokens", []string{"serve", f.Base, "--max-tokens", "0"}, 2, []string{"--max-tokens must be positive"}},
		{"no tokenizer beside the model", []string{"serve", f.Base, "--tokenizer", filepath.Join(other, "tokenizer.json")}, 1, []string{"tokenizer.json", "no such file"}},
		{"a chat template that does not parse", []string{"serve", f.Base, "--chat-template", writeFile(t, other, "t.jinja", "{% if x %}")}, 1, []string{"chat template", "not closed"}},
		{"an adapter that does not exist", []string{"serve", f.Base, "--adapter", "a=" + filepath.Join(other, "nosuch")}, 1, []string{"--adapter a=", "nosuch"}},
		{"an adapter outside --target", []string{"serve", f.Base, "--target", ".*q_proj", "--adapter", "b=" + f.LoRA8}, 1, []string{"--adapter b=", "does not fit"}},
		{"a DoRA adapter without --dora", []string{"serve", f.Base, "--adapter", "d=" + f.DoRA}, 1, []string{"--adapter d=", "use_dora", "start the server with --dora"}},
		{"a bad address", []string{"serve", f.Base, "--addr", "nohost:notaport"}, 1, []string{"serve:", "notaport"}},
	}
	for _, tc := range tests {
		out, errOut, code := cli(t, tc.args...)
		if strings.Contains(out, "listening on") {
			t.Errorf("%s: it listened: %q", tc.reason, out)
			continue
		}
		lastLine := errOut[strings.LastIndex(strings.TrimSuffix(errOut, "\n"), "\n")+1:]
		wantError(t, tc.reason, "", lastLine, code, tc.code, tc.parts...)
	}
	// A missing adapter is fs.ErrNotExist for programs that drive serve.
	cx := &context{cmd: commands["serve"], stdout: io.Discard, stderr: io.Discard}
	if err := runServe(cx, []string{f.Base, "--adapter", "a=" + filepath.Join(other, "nosuch")}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing adapter: got %v, want fs.ErrNotExist", err)
	}
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
