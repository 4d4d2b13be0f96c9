package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// sharedModels is where the real models live: ../shared/models beside the
// project's root.
var sharedModels = filepath.Join("..", "..", "..", "shared", "models")

// sharedModel returns the path of a model in shared/models, or skips the
// test when that folder is not there.
func sharedModel(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(sharedModels, name, "model.onnx")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("shared model %s is not here (%v); the real-model tests need ../shared/models beside the project", name, err)
	}
	return p
}

// cli runs the command line and returns what it printed and its status.
func cli(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = execute(args, &out, &errOut)
	return out.String(), errOut.String(), code
}

// wantError checks that a command failed with status code and one line on
// stderr that starts with "peftonnx: " and contains each of parts.
func wantError(t *testing.T, reason string, stdout, stderr string, code, wantCode int, parts ...string) {
	t.Helper()
	if code != wantCode {
		t.Errorf("%s: got exit status %d, want %d (stderr %q)", reason, code, wantCode, stderr)
	}
	if stdout != "" {
		t.Errorf("%s: got stdout %q, want none", reason, stdout)
	}
	if !strings.HasPrefix(stderr, "peftonnx: ") || strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("%s: got stderr %q, want one line starting with \"peftonnx: \"", reason, stderr)
	}
	for _, p := range parts {
		if !strings.Contains(stderr, p) {
			t.Errorf("%s: stderr %q does not contain %q", reason, stderr, p)
		}
	}
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (run go test -update to accept):\n%s", name, lineDiff(string(want), got))
	}
}

// lineDiff shows the lines that differ, as (-want +got).
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	b.WriteString("(-want +got)\n")
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 20; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("-" + wl + "\n+" + gl + "\n")
			shown++
		}
	}
	return b.String()
}

func TestDispatch(t *testing.T) {
	out, errOut, code := cli(t)
	if code != 2 || out != "" || !strings.Contains(errOut, "usage: peftonnx <command>") {
		t.Errorf("no arguments: got status %d, stdout %q, stderr %q; want 2 and the usage on stderr", code, out, errOut)
	}
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		out, errOut, code := cli(t, args...)
		if code != 0 || errOut != "" || !strings.Contains(out, "inspect") || !strings.Contains(out, "run") {
			t.Errorf("%v: got status %d, stdout %q, stderr %q; want 0 and the command list", args, code, out, errOut)
		}
	}
	out, errOut, code = cli(t, "frobnicate")
	wantError(t, "unknown command", out, errOut, code, 2, `unknown command "frobnicate"`, "inspect")
}

// TestHelp checks that every command answers -h with its synopsis on
// stdout and status 0.
func TestHelp(t *testing.T) {
	for _, name := range commandNames() {
		for _, args := range [][]string{{name, "-h"}, {name, "--help"}, {"help", name}} {
			out, errOut, code := cli(t, args...)
			if code != 0 || errOut != "" || !strings.HasPrefix(out, "usage: peftonnx "+name+" ") {
				t.Errorf("%v: got status %d, stdout %q, stderr %q; want 0 and usage", args, code, out, errOut)
			}
		}
	}
}

func TestParseInterspersed(t *testing.T) {
	for _, test := range []struct {
		args    []string
		pos     []string
		targets []string
		json    bool
	}{
		{[]string{"m.onnx"}, []string{"m.onnx"}, nil, false},
		{[]string{"m.onnx", "--json"}, []string{"m.onnx"}, nil, true},
		{[]string{"--target", "a", "m.onnx", "-target=b", "--json"}, []string{"m.onnx"}, []string{"a", "b"}, true},
		{[]string{"m.onnx", "--", "--json"}, []string{"m.onnx", "--json"}, nil, false},
		{[]string{"a", "b", "--json", "c"}, []string{"a", "b", "c"}, nil, true},
	} {
		cx := &context{cmd: &command{name: "t"}}
		var targets stringList
		cx.flags().Var(&targets, "target", "")
		asJSON := cx.flags().Bool("json", false, "")
		pos, err := cx.parse(test.args)
		if err != nil {
			t.Errorf("%q: unexpected error: %v", test.args, err)
			continue
		}
		if strings.Join(pos, "|") != strings.Join(test.pos, "|") || strings.Join(targets, "|") != strings.Join(test.targets, "|") || *asJSON != test.json {
			t.Errorf("%q: got %q %q %v, want %q %q %v", test.args, pos, targets, *asJSON, test.pos, test.targets, test.json)
		}
	}
}
