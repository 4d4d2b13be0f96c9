package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/rewrite"
)

// TestUnmergeCLI merges a trained LoRA, DoRA and PiSSA-started model and
// unmerges it with its exported adapter: OUT computes what the trained
// model does, its base weights are the original base's (for PiSSA, W and
// not the residual), and it carries branches again. The adapter of
// another training of the same injection is refused with nothing
// written, as are a model that is not merged and a missing --adapter; a
// model without merge records takes the adapter with a note.
func TestUnmergeCLI(t *testing.T) {
	needORT(t)
	for _, c := range []struct{ name, flag string }{{"lora", "--init=gaussian"}, {"dora", "--dora"}, {"pissa", "--init=pissa"}} {
		t.Run(c.name, func(t *testing.T) {
			model := "gpt2-past-torch16"
			base := sharedModel(t, model)
			dir := t.TempDir()
			adapted := filepath.Join(dir, "adapted.onnx")
			runOK(t, "inject", base, "-o", adapted, "--target", `.*\.c_proj`, "--r", "2", "--alpha", "4", c.flag)
			trained, other := filepath.Join(dir, "trained.onnx"), filepath.Join(dir, "other.onnx")
			setRandomB(t, adapted, trained, 5)
			setRandomB(t, adapted, other, 6)
			ad, otherAd := filepath.Join(dir, "adapter"), filepath.Join(dir, "other-adapter")
			runOK(t, "export-adapter", trained, "--out", ad)
			runOK(t, "export-adapter", other, "--out", otherAd)
			merged := filepath.Join(dir, "merged.onnx")
			runOK(t, "merge", trained, "-o", merged)

			feeds := modelFeeds(t, model)
			want := runModel(t, trained, feeds)
			if d, err := maxDiff(want, runModel(t, base, feeds)); err != nil || d < 1e-3 {
				t.Fatalf("the trained model computes what the base does (difference %.3g, %v): the test would prove nothing", d, err)
			}
			un := filepath.Join(dir, "unmerged.onnx")
			runOK(t, "unmerge", merged, "--adapter", ad, "-o", un)
			wantSame(t, "unmerged vs trained", runModel(t, un, feeds), want, 1e-4)
			um, bm := loadModel(t, un), loadModel(t, base)
			if _, err := rewrite.Sites(um); err != nil {
				t.Errorf("unmerged model carries no branches: %v", err)
			}
			worst := 0.0
			for _, w := range bm.Graph().Initializer {
				bv, err := bm.Float32s(w)
				if err != nil {
					continue // not float
				}
				got := um.Initializer(w.Name)
				if got == nil {
					t.Fatalf("unmerged model lost base initializer %q", w.Name)
				}
				uv, err := um.Float32s(got)
				if err != nil || len(uv) != len(bv) {
					t.Fatalf("unmerged %q: %d values (%v), base %d", w.Name, len(uv), err, len(bv))
				}
				for i := range bv {
					worst = math.Max(worst, math.Abs(float64(uv[i])-float64(bv[i]))/math.Max(1, math.Abs(float64(bv[i]))))
				}
			}
			if worst > 1e-5 {
				t.Errorf("unmerged base weights differ from the base's by %.3g (relative)", worst)
			}
			again := filepath.Join(dir, "again.onnx")
			runOK(t, "merge", un, "-o", again)
			wantSame(t, "merged again vs trained", runModel(t, again, feeds), want, 1e-4)

			bad := filepath.Join(dir, "bad.onnx")
			stdout, errOut, code := cli(t, "unmerge", merged, "--adapter", otherAd, "-o", bad)
			wantError(t, "another training's adapter", stdout, errOut, code, 1, "not merged with this adapter", otherAd)
			stdout, errOut, code = cli(t, "unmerge", trained, "--adapter", ad, "-o", bad)
			wantError(t, "a model that is not merged", stdout, errOut, code, 1, "carries LoRA branches", "not a merged model")
			stdout, errOut, code = cli(t, "unmerge", merged, "-o", bad)
			wantError(t, "no --adapter", stdout, errOut, code, 2, "--adapter is required", "records merges into 24 modules")
			if c.name == "lora" {
				// The base records no merges: any adapter of the right
				// shapes is taken, and the command says so.
				legacy := filepath.Join(dir, "legacy.onnx")
				_, errOut, code := cli(t, "unmerge", base, "--adapter", ad, "-o", legacy)
				if code != 0 || !strings.Contains(errOut, "records no merges") || !strings.Contains(errOut, "taken on trust") {
					t.Errorf("unmerge of a model without merge records: exit %d, stderr %q; want 0 and a note that the adapter was taken on trust", code, errOut)
				}
			}
			if _, err := os.Stat(bad); err == nil {
				t.Errorf("a failed unmerge left %s behind", bad)
			}
		})
	}
}
