package main

import (
	"path/filepath"
	"testing"
)

// TestLimits asks inject and prefix for adapters beyond any machine
// (issue 16, M5), and sets the limits from the environment: each refusal
// is one line naming the limit, before anything is allocated, and nothing
// is written.
func TestLimits(t *testing.T) {
	dir := t.TempDir()
	base := builderBase(t, dir)
	out := filepath.Join(dir, "out", "x.onnx")
	for _, tc := range []struct {
		reason string
		env    map[string]string
		args   []string
		code   int
		parts  []string
	}{
		{"rank 1e9", nil, []string{"inject", base, "-o", out, "--target", ".*q_proj", "--r", "1000000000"}, 1, []string{"rank 1000000000 is above the limit", "PEFTONNX_MAX_RANK"}},
		{"rank above a user's limit", map[string]string{"PEFTONNX_MAX_RANK": "4"}, []string{"inject", base, "-o", out, "--target", ".*q_proj", "--r", "8"}, 1, []string{"rank 8 is above the limit of 4"}},
		{"bytes above a user's limit", map[string]string{"PEFTONNX_MAX_NEW_BYTES": "1000"}, []string{"inject", base, "-o", out, "--target", ".*", "--r", "8"}, 1, []string{"above the limit of 1000 bytes"}},
		{"1e7 prefix tokens", nil, []string{"prefix", base, "-o", out, "--tokens", "10000000"}, 1, []string{"10000000 prefix tokens is above the limit", "PEFTONNX_MAX_PREFIX_TOKENS"}},
		{"projection hidden 1e9", nil, []string{"prefix", base, "-o", out, "--tokens", "4", "--projection", "--projection-hidden", "1000000000"}, 1, []string{"projection hidden size 1000000000", "PEFTONNX_MAX_PROJECTION_HIDDEN"}},
		{"threads above a user's limit", map[string]string{"PEFTONNX_MAX_THREADS": "2"}, []string{"run", base, "--defaults", "--output-dir", filepath.Join(dir, "out"), "--threads", "4"}, 1, []string{"from 0 to 2, got 4"}},
		{"a limit that is not a number", map[string]string{"PEFTONNX_MAX_RANK": "lots"}, []string{"inspect", base}, 1, []string{"PEFTONNX_MAX_RANK=\"lots\"", "positive whole number"}},
	} {
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		stdout, stderr, code := cli(t, tc.args...)
		wantError(t, tc.reason, stdout, stderr, code, tc.code, tc.parts...)
		for k := range tc.env {
			t.Setenv(k, "")
		}
		if names := dirNames(t, dir); len(names) != 1 {
			t.Errorf("%s: left %v in %s", tc.reason, names, dir)
		}
	}
}
