package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/internal/atomicfile"
)

// TestTrainClaimsOut checks train's outputs before it trains (issue 16,
// D4, D5): a --log-json in a missing folder and an --out that takes no
// files fail at once, before any step and without touching a --out that
// was there; a second run into a folder that a run holds fails at once.
func TestTrainClaimsOut(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	model := trainTinyLlama(t, dir)
	data := trainCountingData(t, dir, "good.jsonl", 8, 6, 32)
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(out, "notes.txt")
	if err := os.WriteFile(keep, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"train", model, "--data", data, "--steps", "2", "--threads", "1"}
	for _, tc := range []struct {
		reason string
		extra  []string
		parts  []string
	}{
		{"log in a missing folder", []string{"--out", out, "--log-json", filepath.Join(dir, "missing", "log.jsonl")}, []string{"--log-json", "cannot be written"}},
		{"out that takes no files", []string{"--out", "/proc/self"}, []string{"--out /proc/self/adapter_config.json cannot be written"}},
	} {
		stdout, stderr, code := cli(t, append(args, tc.extra...)...)
		wantError(t, tc.reason, stdout, stderr, code, 1, tc.parts...)
		if b, err := os.ReadFile(keep); err != nil || string(b) != "mine" {
			t.Errorf("%s: --out's own file: %q, %v", tc.reason, b, err)
		}
		if got := listDir(t, out); len(got) != 1 {
			t.Errorf("%s: --out holds %q", tc.reason, got)
		}
	}

	unlock, err := atomicfile.Lock(out)
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := cli(t, append(args, "--out", out)...)
	unlock()
	wantError(t, "a second run", stdout, stderr, code, 1, "--out "+out+" is in use", "another train run")
	if got := listDir(t, out); len(got) != 1 {
		t.Errorf("a second run: --out holds %q", got)
	}
	// Unlocked, the same run trains; a missing --out that a failed run
	// created is removed again.
	runOK(t, append(args, "--out", out)...)
	fresh := filepath.Join(dir, "fresh", "out")
	stdout, stderr, code = cli(t, append(args, "--out", fresh, "--log-json", filepath.Join(dir, "missing", "log.jsonl"))...)
	wantError(t, "a fresh --out", stdout, stderr, code, 1, "--log-json")
	if _, err := os.Stat(filepath.Join(dir, "fresh")); !os.IsNotExist(err) {
		t.Errorf("a failed run left the --out it created: %v", err)
	}
}

// TestOutputNamesAFolder gives -o a name that ends in a slash (issue 16,
// E10): an error that says it names a folder.
func TestOutputNamesAFolder(t *testing.T) {
	dir := t.TempDir()
	base := builderBase(t, dir)
	stdout, stderr, code := cli(t, "inject", base, "-o", filepath.Join(dir, "new")+"/", "--target", ".*q_proj")
	wantError(t, "-o new/", stdout, stderr, code, 1, "names a folder", filepath.Join(dir, "new", "model.onnx"))
	if strings.Contains(stderr, "not a regular file") {
		t.Errorf("the message still says %q", stderr)
	}
}
