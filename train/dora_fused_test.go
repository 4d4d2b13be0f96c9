package train

import (
	"maps"
	"math"
	"slices"
	"sort"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/train/autodiff"
)

// DoRA on q and v inside fused attention: in the packed weight of the
// transformer optimizer's Attention nodes, whose DoRA is on the weight
// side, and in the model builder's packed qkv_proj MatMul before
// GroupQueryAttention (qvFixtures).

// doraQV injects DoRA on the q and v parts of f's packed projections
// (and on the fixture's other targets where others is set) into m. It
// returns the trainable tensors and the sites.
func doraQV(t *testing.T, m *graph.Model, f qvFixture, others bool) ([]string, []rewrite.Site) {
	t.Helper()
	lc := qvLoRA(f, f.fused)
	if !others {
		lc.TargetModules = lc.TargetModules[:1]
	}
	lc.UseDoRA = true
	sites, sum, err := rewrite.InjectLoRA(m, lc, rewrite.WithSeed(1))
	if err != nil {
		t.Fatal(err)
	}
	if sites[0].Widths == nil || sites[0].Magnitude == "" {
		t.Fatalf("site %s: widths %v, magnitude %q", sites[0].Module, sites[0].Widths, sites[0].Magnitude)
	}
	return sum.Trainable(), sites
}

// TestDoRAInsideFusedAttentionTrains trains DoRA on q and v inside fused
// attention and on the fixture's other targets for 30 steps (trainFor30:
// the loss falls, the frozen weights, the packed ones included, come out
// bit for bit): every magnitude of a packed layer moves, and the merged
// model, whose packed weights hold W', computes what the trained adapted
// model does on a batch padded on the right.
func TestDoRAInsideFusedAttentionTrains(t *testing.T) {
	requireORT(t)
	for _, f := range qvFixtures() {
		t.Run(f.name, func(t *testing.T) {
			m, err := f.build(false)
			if err != nil {
				t.Fatal(err)
			}
			var sites []rewrite.Site
			trained := trainFor30(t, m, f.task, fusedData(f.task, f.task == CausalLM), f.lr/2, func(a *graph.Model) (Summaryish, error) {
				var params []string
				params, sites = doraQV(t, a, f, true)
				return Summaryish{params, len(params)}, nil
			})
			fresh := m.Clone()
			doraQV(t, fresh, f, true)
			packed := 0
			for _, s := range sites {
				if s.Widths == nil {
					continue
				}
				packed++
				before, err := fresh.Float32s(fresh.Initializer(s.Magnitude))
				if err != nil {
					t.Fatal(err)
				}
				after, err := trained.Float32s(trained.Initializer(s.Magnitude))
				if err != nil {
					t.Fatal(err)
				}
				if slices.Equal(before, after) {
					t.Errorf("%s: the magnitude did not train", s.Module)
				}
			}
			if packed != 2 {
				t.Errorf("%d packed layers, want 2", packed)
			}
			merged := trained.Clone()
			if err := rewrite.Merge(merged); err != nil {
				t.Fatal(err)
			}
			// Logits at padded positions are left out: GroupQueryAttention
			// leaves them undefined (two runs of one model differ there).
			feeds := fixedBatch(t, trained, trained, f.task, nil)
			mask := feeds["attention_mask"].Int64()
			out := runModel(t, trained, feeds, "logits")["logits"]
			want, got := out.ToFloat64(), runModel(t, merged, feeds, "logits")["logits"].ToFloat64()
			per := len(want) / len(mask)
			worst := 0.0
			for i := range want {
				if out.Rank() == 3 && mask[i/per] == 0 {
					continue
				}
				worst = max(worst, math.Abs(got[i]-want[i])/math.Max(1, math.Abs(want[i])))
			}
			t.Logf("merged vs trained logits: largest relative difference %.3g", worst)
			if worst > 1e-4 {
				t.Errorf("merged logits differ from the trained adapted model's by %.3g", worst)
			}
		})
	}
}

// TestDoRAInsideFusedAttentionGradients checks the gradients of A, B and
// the magnitudes of DoRA on q and v inside fused attention against
// central finite differences of the loss, on a batch padded on the right:
// with the norms not detached, of the model itself; detached (HF PEFT's
// detach(), as training runs), of the model whose norms are held at
// their values. Each tensor's entries of the largest gradients are
// checked.
func TestDoRAInsideFusedAttentionGradients(t *testing.T) {
	requireORT(t)
	for _, f := range qvFixtures() {
		t.Run(f.name, func(t *testing.T) {
			m, err := f.build(false)
			if err != nil {
				t.Fatal(err)
			}
			params, sites := doraQV(t, m, f, false)
			for _, s := range sites {
				fillAdapter(t, m, []string{s.B})
				scaleBy(t, m, s.Magnitude, 0.3)
			}
			detached, err := rewrite.DetachedValues(m)
			if err != nil || len(detached) != len(sites) {
				t.Fatalf("DetachedValues: %v, %v", detached, err)
			}
			loss := taskLoss(t, m, f.task)
			// held is m with each norm replaced by its value (the graph
			// with the norms as outputs computes them).
			probe := m.Clone()
			for _, n := range detached {
				probe.AddOutput(graph.TensorInfo(n, dtype.Float32, nil))
			}
			norms := runModel(t, probe, fixedBatch(t, probe, m, f.task, nil), detached...)
			held := m.Clone()
			for _, n := range detached {
				held.AddInitializer(graph.NewFloatTensor(n+"/held", dtype.Float32, norms[n].Shape(), norms[n].ToFloat64()))
				held.ReplaceUses(n, n+"/held")
			}
			full := gradientGraph(t, m, loss, params)
			det := gradientGraph(t, m, loss, params, detached...)
			fullFD := newLossProbe(t, full, m, f.task, params, loss)
			defer fullFD.close()
			heldFD := newLossProbe(t, gradientGraph(t, held, loss, params), m, f.task, params, loss)
			defer heldFD.close()
			fullG, detG := fullFD.gradients(t, full), fullFD.gradients(t, det)
			worst := 0.0
			for _, p := range params {
				worst = max(worst, fullFD.check(t, "not detached", p, fullG[p]), heldFD.check(t, "detached", p, detG[p]))
			}
			t.Logf("%d tensors, 4 entries each, both ways: largest relative difference from finite differences %.3g", len(params), worst)
			for _, s := range sites {
				if slices.Equal(detG[s.A], fullG[s.A]) {
					t.Errorf("%s: detaching the norm did not change A's gradient", s.Module)
				}
			}
		})
	}
}

// scaleBy multiplies the values of initializer name by 1 + c·u, u in
// [−1, 1] by position.
func scaleBy(t *testing.T, m *graph.Model, name string, c float64) {
	t.Helper()
	init := m.Initializer(name)
	v, err := m.Float32s(init)
	if err != nil {
		t.Fatal(err)
	}
	for i := range v {
		v[i] *= float32(1 + c*math.Sin(float64(i)*1.7))
	}
	if err := graph.SetFloat32s(init, v); err != nil {
		t.Fatal(err)
	}
}

// gradientGraph returns the gradient graph of loss in m for params, the
// values detached held constant.
func gradientGraph(t *testing.T, m *graph.Model, loss string, params []string, detached ...string) *graph.Model {
	t.Helper()
	dm := m.Clone()
	autodiff.MarkStopGradient(dm, detached...)
	g, err := autodiff.Build(dm, loss, params)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// lossProbe runs one gradient graph's loss on the fixed batch
// (fixedBatch) with the trainable tensors perturbed one entry at a time.
type lossProbe struct {
	s     *rt.Session
	feeds map[string]*rt.Tensor
	vals  map[string][]float32
	dims  map[string][]int64
	loss  string
}

func newLossProbe(t *testing.T, g, m *graph.Model, task Task, params []string, loss string) *lossProbe {
	t.Helper()
	b, err := g.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := rt.NewSessionFromBytes(b, rt.WithIntraOpThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	p := &lossProbe{s: s, feeds: fixedBatch(t, g, m, task, params), vals: map[string][]float32{}, dims: map[string][]int64{}, loss: loss}
	for _, name := range params {
		init := m.Initializer(name)
		if p.vals[name], err = m.Float32s(init); err != nil {
			t.Fatal(err)
		}
		p.dims[name] = init.Dims
	}
	return p
}

func (p *lossProbe) close() { p.s.Close() }

// gradients runs gradient graph g (of the same inputs) at the probe's
// point and returns each parameter's gradient.
func (p *lossProbe) gradients(t *testing.T, g *graph.Model) map[string][]float64 {
	t.Helper()
	var outs []string
	for name := range p.vals {
		outs = append(outs, autodiff.GradName(name))
	}
	res := runModel(t, g, p.feeds, outs...)
	got := map[string][]float64{}
	for name := range p.vals {
		got[name] = res[autodiff.GradName(name)].ToFloat64()
	}
	return got
}

// lossAt returns the loss with entry i of param moved by d.
func (p *lossProbe) lossAt(t *testing.T, param string, i int, d float32) float64 {
	t.Helper()
	v := slices.Clone(p.vals[param])
	v[i] += d
	feeds := maps.Clone(p.feeds)
	feeds[param] = mustTensor(t)(rt.NewFloat32(p.dims[param], v))
	res, err := p.s.Run(feeds, []string{p.loss})
	if err != nil {
		t.Fatal(err)
	}
	return res[p.loss].ToFloat64()[0]
}

// check compares the 4 largest entries of grad, param's gradient, with
// central differences of the probe's loss, and returns the largest
// relative difference (+Inf where either is NaN, which fails the test).
func (p *lossProbe) check(t *testing.T, what, param string, grad []float64) float64 {
	t.Helper()
	idx := make([]int, len(grad))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return math.Abs(grad[idx[a]]) > math.Abs(grad[idx[b]]) })
	const h = 1e-2
	worst := 0.0
	for _, i := range idx[:4] {
		fd := (p.lossAt(t, param, i, h) - p.lossAt(t, param, i, -h)) / (2 * h)
		d := math.Abs(grad[i] - fd)
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		if d > 0 {
			worst = max(worst, d/math.Abs(fd))
		}
		if !(d <= 1e-2*math.Abs(fd)+1e-4) {
			t.Errorf("%s: d loss/d %s[%d]: got %.6g, finite differences %.6g", what, param, i, grad[i], fd)
		}
	}
	return worst
}
