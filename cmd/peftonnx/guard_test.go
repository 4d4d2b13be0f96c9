package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
)

// withCommand registers c for the length of the test.
func withCommand(t *testing.T, c *command) {
	t.Helper()
	register(c)
	t.Cleanup(func() { delete(commands, c.name) })
}

// TestPanicIsOneLine checks that a panic in a command is a one-line error
// that says it is a bug and where the stack went, not a Go trace, and
// that deferred clean-ups still run.
func TestPanicIsOneLine(t *testing.T) {
	stackDir = t.TempDir()
	defer func() { stackDir = "" }()
	cleaned := false
	withCommand(t, &command{name: "zz-panic", summary: "panics", run: func(*context, []string) error {
		defer func() { cleaned = true }()
		var s []int
		_ = s[3]
		return nil
	}})
	stdout, stderr, code := cli(t, "zz-panic")
	if code != 1 || stdout != "" || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("got status %d, stdout %q, stderr %q; want 1 and one line", code, stdout, stderr)
	}
	for _, w := range []string{"peftonnx: zz-panic: internal error, a bug in peftonnx: runtime error: index out of range [3] with length 0 (stack in " + stackDir, "please report it"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr %q lacks %q", stderr, w)
		}
	}
	if strings.Contains(stderr, "goroutine") {
		t.Errorf("stderr holds the stack: %q", stderr)
	}
	files, _ := filepath.Glob(filepath.Join(stackDir, "peftonnx-zz-panic-panic-*.txt"))
	if len(files) != 1 {
		t.Fatalf("stack files: got %q, want one", files)
	}
	b, _ := os.ReadFile(files[0])
	if !strings.Contains(string(b), "goroutine") || !strings.Contains(string(b), "guard_test.go") {
		t.Errorf("the stack file does not hold the stack:\n%s", b)
	}
	if !cleaned {
		t.Error("the command's deferred clean-up did not run")
	}
}

// TestTruncatedWeightsAreAnError reproduces issue 16's C4 deterministically:
// a model's external data file is mapped, then truncated under the
// command, which reads a weight from the mapping. The fault (SIGBUS) is
// an error that says an input file changed, not a crash.
func TestTruncatedWeightsAreAnError(t *testing.T) {
	stackDir = t.TempDir()
	defer func() { stackDir = "" }()
	dir := t.TempDir()
	built, err := models.Llama(models.LlamaTiny())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "m.onnx")
	if err := built.Save(path, graph.SaveOptions{ExternalData: true, Threshold: 1}); err != nil {
		t.Fatal(err)
	}
	withCommand(t, &command{name: "zz-read", summary: "reads weights", run: func(*context, []string) error {
		m, err := graph.Load(path)
		if err != nil {
			return err
		}
		defer m.Close()
		// Map the data file by reading one weight, then truncate it.
		w := m.Initializer("lm_head.weight")
		if _, err := m.Float32s(w); err != nil {
			return err
		}
		if err := os.Truncate(path+".data", 0); err != nil {
			return err
		}
		for _, init := range m.Graph().Initializer {
			if _, err := m.Float32s(init); err != nil {
				return err
			}
		}
		return nil
	}})
	stdout, stderr, code := cli(t, "zz-read")
	if code != 1 || stdout != "" || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("got status %d, stdout %q, stderr %q; want 1 and one line", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "peftonnx: zz-read: an input file changed while it was being read: reading memory at 0x") {
		t.Errorf("stderr %q does not say that an input file changed", stderr)
	}
}
