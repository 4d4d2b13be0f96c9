package serve

import (
	"context"
	"math"
	"testing"

	"github.com/peftonnx/peftonnx/internal/servetest"
	"github.com/peftonnx/peftonnx/models"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/session"
)

// TestDoRALogits runs the DoRA engine's own session, stacked inputs and
// slot table on one batch whose rows are a DoRA adapter, a plain LoRA
// adapter and the base (the prompt, then greedy steps), and holds every
// row's logits to those of the adapted model of its adapter (the
// branches applied, unmerged), run alone on runtime's Generator.
func TestDoRALogits(t *testing.T) {
	f := servetest.New(t, models.LlamaMini(), "")
	e, err := New(f.Base, Options{DoRA: true, MaxLoRAs: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	paths := []string{f.DoRA, f.LoRA4, ""}
	slots := newSlotTable(2)
	index := make([]int64, len(paths))
	for row, path := range paths {
		var a *entry
		if path != "" {
			if _, err := e.Load(path, path, false); err != nil {
				t.Fatal(err)
			}
			if a, err = e.acquire(path); err != nil {
				t.Fatal(err)
			}
			defer e.release(a)
		}
		index[row] = int64(slots.take(a))
	}
	feeds, err := slots.inputs(e.stacked)
	if err != nil {
		t.Fatal(err)
	}

	const steps = 4
	prompt := []int64{1, 5, 9, 3, 7}
	// want[row][step] is the adapted model's logits of the last position;
	// toks[row][step] the token fed at the next step (greedy).
	want := make([][][]float64, len(paths))
	toks := make([][]int64, len(paths))
	for row, path := range paths {
		m := f.Model(t)
		var opts []session.Option
		if path != "" {
			opts = append(opts, session.WithAdapter(f.Adapter(path)))
		}
		s, err := session.OpenModel(m, opts...)
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		g, err := rt.NewGenerator(s.Session)
		if err != nil {
			t.Fatal(err)
		}
		seq, err := g.NewSequence(1, len(prompt)+steps)
		if err != nil {
			t.Fatal(err)
		}
		ids := prompt
		for range steps {
			out, err := seq.Feed(context.Background(), ids, nil)
			if err != nil {
				t.Fatal(err)
			}
			l := lastLogits(out, 0)
			want[row] = append(want[row], l)
			next := int64(argmax(l))
			toks[row] = append(toks[row], next)
			ids = []int64{next}
		}
	}

	seq, err := e.gen.NewSequence(len(paths), len(prompt)+steps)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for range paths {
		ids = append(ids, prompt...)
	}
	for step := range steps {
		out, err := feedRows(seq, feeds, index, ids, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = ids[:0]
		for row := range paths {
			got, w := lastLogits(out, row), want[row][step]
			worst := 0.0
			for i := range w {
				worst = math.Max(worst, math.Abs(got[i]-w[i])/math.Max(1, math.Abs(w[i])))
			}
			if worst > 1e-4 {
				t.Errorf("step %d, row %d (%s, slot %d): logits differ from the adapted model's by %g", step, row, paths[row], index[row], worst)
			}
			ids = append(ids, toks[row][step])
		}
	}
	if d := maxDiff(want[0][0], want[1][0]); d < 1e-2 {
		t.Fatalf("the DoRA and LoRA adapters' logits differ by %g only; the test proves nothing", d)
	}
}

// lastLogits returns the logits [batch, seq, vocab] of row's last
// position, as float64.
func lastLogits(out *rt.Tensor, row int) []float64 {
	shape := out.Shape()
	seq, vocab := int(shape[1]), int(shape[2])
	v := out.ToFloat64()
	start := (row*seq + seq - 1) * vocab
	return v[start : start+vocab]
}

func argmax(v []float64) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// maxDiff returns the largest |a[i] − b[i]|: +Inf where the lengths
// differ or a value is NaN.
func maxDiff(a, b []float64) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		e := math.Abs(a[i] - b[i])
		if math.IsNaN(e) {
			return math.Inf(1)
		}
		d = math.Max(d, e)
	}
	return d
}

// TestMaxDiffSeesNaN: a NaN, on either side or both, is no match.
func TestMaxDiffSeesNaN(t *testing.T) {
	nan := math.NaN()
	for _, c := range [][2][]float64{{{1, nan}, {1, 2}}, {{1, 2}, {1, nan}}, {{nan}, {nan}}} {
		if d := maxDiff(c[0], c[1]); !math.IsInf(d, 1) {
			t.Errorf("maxDiff(%v, %v) = %v, want +Inf", c[0], c[1], d)
		}
	}
	if d := maxDiff([]float64{1, 2}, []float64{1, 2.5}); d != 0.5 {
		t.Errorf("maxDiff = %v, want 0.5", d)
	}
}
