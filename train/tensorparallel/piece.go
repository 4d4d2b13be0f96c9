package tensorparallel

import (
	"fmt"
	"runtime/debug"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/session"
	"github.com/peftonnx/peftonnx/train"
	"github.com/peftonnx/peftonnx/train/autodiff"
)

// Names in the pieces' vector-Jacobian graphs.
const (
	gradOutName = "tp_grad_out" // the gradient of the piece's output, fed
	vjpName     = "tp_vjp"      // Σ output·grad_out, whose gradients the graph computes
	hiddenName  = "hidden"      // the input of blocks and the head
)

// piece is one graph of a rank's share: its forward session, its
// vector-Jacobian session (nil for the embedding, which no gradient
// reaches), and the LoRA factors it holds.
type piece struct {
	name   string
	out    string // "partial" or "logits"
	fwd    *session.Session
	vjp    *session.Session
	params []*train.Param
	// frozen holds the piece's frozen matrices, fed to both sessions.
	frozen map[string]*rt.Tensor
	// grads names the vjp outputs: each param's gradient, then each of
	// wrt's, then hidden's.
	grads []string
	// wrt names inputs (other than hidden) whose gradients backward
	// returns: a prefix's past keys and values.
	wrt []string
	// dropouts are the piece's seeded LoRA dropouts, and training
	// whether the piece reads the training-mode switch.
	dropouts []pieceDropout
	training bool
}

// pieceDropout is the seeded dropout of a module of a piece
// (train.SeedLoRADropout): the input that feeds its draws, the width of
// the layer's input on this rank, and the first of the whole input's
// columns this rank holds.
type pieceDropout struct {
	module, input   string
	width, firstCol int
}

// newPiece applies the modules of lora that m holds, and opens the
// forward and (when backward) vector-Jacobian sessions of the result.
//
// Its LoRA dropouts, if any, draw their masks on the host
// (train.SeedLoRADropout), so that the vector-Jacobian session drops
// what the forward session dropped, and every rank what one process
// drops: rank is this rank, whose run of a row-parallel module's input
// columns the piece holds.
//
// A nil lora (prefix tuning) adds no factors; wrt names the inputs whose
// gradients backward returns besides hidden's.
func newPiece(name string, m *graph.Model, lora *adapter.Adapter, rank int, out string, backward bool, wrt []string, lrScaleB float64, opts []rt.Option) (*piece, error) {
	p := &piece{name: name, out: out, wrt: wrt}
	// The piece holds the rank's share as a whole graph of its own.
	sub := adapter.NewLoRA(adapter.LoRAConfig{})
	if lora != nil {
		cfg := *lora.LoRA
		cfg.TensorParallelDegree = -1
		sub = adapter.NewLoRA(cfg)
		for _, mod := range lora.Modules() {
			if m.Initializer(mod+".weight") != nil {
				sub.Weights[mod] = lora.Weights[mod]
			}
		}
	}
	if len(sub.Weights) > 0 {
		sites, _, err := rewrite.ApplyLoRA(m, sub)
		if err != nil {
			return nil, fmt.Errorf("tensorparallel: %s: %w", name, err)
		}
		for _, s := range sites {
			for _, f := range []string{s.A, s.B} {
				init := m.Initializer(f)
				vals, err := m.Float32s(init)
				if err != nil {
					return nil, fmt.Errorf("tensorparallel: %s: %s: %w", name, f, err)
				}
				prm := train.NewParam(f, init.Dims, vals)
				if f == s.B {
					prm.LRScale = lrScaleB
				}
				p.params = append(p.params, prm)
			}
		}
	}
	modules, err := train.SeedLoRADropout(m)
	if err != nil {
		return nil, fmt.Errorf("tensorparallel: %s: %w", name, err)
	}
	for _, mod := range modules {
		split, err := adapter.TensorParallelSplit(mod)
		if err != nil {
			return nil, fmt.Errorf("tensorparallel: %s: %w", name, err)
		}
		d := pieceDropout{module: mod, input: mod + train.DropoutUniformSuffix}
		_, dims, _ := graph.ValueShape(m.Input(d.input))
		d.width = int(dims[2])
		if split == adapter.RowParallel {
			d.firstCol = rank * d.width
		}
		p.dropouts = append(p.dropouts, d)
	}
	p.training = m.Input(rewrite.TrainingModeInput) != nil
	if err := p.feedFrozen(m); err != nil {
		return nil, fmt.Errorf("tensorparallel: %s: %w", name, err)
	}
	// The piece's weights now live in p.frozen alone: hand back the
	// garbage of drawing and slicing them before the next piece adds its
	// own, so that the rank's peak stays near its share of the model.
	debug.FreeOSMemory()
	if p.fwd, err = train.NewSession(forwardGraph(m, p.params), opts...); err != nil {
		return nil, fmt.Errorf("tensorparallel: %s: %w", name, err)
	}
	if !backward {
		return p, nil
	}
	g, err := vjpGraph(m, out, p.params, wrt)
	if err != nil {
		p.close()
		return nil, fmt.Errorf("tensorparallel: %s: %w", name, err)
	}
	if p.vjp, err = train.NewSession(g, opts...); err != nil {
		p.close()
		return nil, fmt.Errorf("tensorparallel: %s: %w", name, err)
	}
	for _, prm := range p.params {
		p.grads = append(p.grads, autodiff.GradName(prm.Name))
	}
	for _, w := range wrt {
		p.grads = append(p.grads, autodiff.GradName(w))
	}
	p.grads = append(p.grads, autodiff.GradName(hiddenName))
	return p, nil
}

// feedFrozen turns m's frozen matrices (the 2-D weights, not the LoRA
// factors) into graph inputs, fed every run from one Go copy by
// reference, so that the forward and the vector-Jacobian sessions share
// them instead of each holding its own.
func (p *piece) feedFrozen(m *graph.Model) error {
	p.frozen = map[string]*rt.Tensor{}
	var names []string
	for _, init := range m.Graph().Initializer {
		if len(init.Dims) == 2 && !strings.Contains(init.Name, ".lora_") {
			names = append(names, init.Name)
		}
	}
	for _, n := range names {
		init := m.Initializer(n)
		vals, err := m.Float32s(init)
		if err != nil {
			return err
		}
		t, err := rt.NewFloat32(init.Dims, vals)
		if err != nil {
			return err
		}
		m.RemoveInitializer(n)
		m.AddInput(graph.TensorInfo(n, graph.TypeOf(init), init.Dims))
		p.frozen[n] = t
	}
	return nil
}

// forwardGraph returns m with the LoRA factors params as graph inputs, so
// that each run is fed their current values.
func forwardGraph(m *graph.Model, params []*train.Param) *graph.Model {
	f := m.Clone()
	for _, p := range params {
		init := f.RemoveInitializer(p.Name)
		f.AddInput(graph.TensorInfo(p.Name, graph.TypeOf(init), init.Dims))
	}
	return f
}

// vjpGraph returns the graph that computes m's output again and, given
// the gradient of a loss with respect to that output (gradOutName), the
// gradients with respect to params and to the input hidden.
func vjpGraph(m *graph.Model, out string, params []*train.Param, wrt []string) (*graph.Model, error) {
	g := m.Clone()
	var info *onnxpb.ValueInfoProto
	for _, o := range g.Graph().Output {
		if o.Name == out {
			info = proto.Clone(o).(*onnxpb.ValueInfoProto)
		}
	}
	if info == nil {
		return nil, fmt.Errorf("no output %q", out)
	}
	info.Name = gradOutName
	g.AddInput(info)
	prod := g.UniqueName("tp_vjp_product")
	g.NewNode("Mul", "/tp_vjp/Mul", []string{out, gradOutName}, []string{prod})
	g.NewNode("ReduceSum", "/tp_vjp/ReduceSum", []string{prod}, []string{vjpName}, graph.AttrInt("keepdims", 0))
	names := make([]string, 0, len(params)+1)
	for _, p := range params {
		names = append(names, p.Name)
	}
	names = append(append(names, wrt...), hiddenName)
	if slices.Contains(names[:len(names)-1], hiddenName) {
		return nil, fmt.Errorf("a parameter is called %q", hiddenName)
	}
	return autodiff.Build(g, vjpName, names)
}

// close releases the sessions.
func (p *piece) close() {
	if p == nil {
		return
	}
	p.fwd.Close()
	p.vjp.Close()
}

// paramFeeds adds the frozen matrices and the current values of the
// piece's factors to in.
func (p *piece) paramFeeds(in map[string]*rt.Tensor) error {
	for n, t := range p.frozen {
		in[n] = t
	}
	for _, prm := range p.params {
		t, err := rt.NewFloat32(prm.Shape, prm.Data)
		if err != nil {
			return err
		}
		in[prm.Name] = t
	}
	return nil
}

// dropoutFeeds adds to in the training-mode switch, on when b carries
// dropout draws (a training batch), and the draws of the piece's
// dropouts for b: the columns of each module's input that this rank holds.
func (p *piece) dropoutFeeds(in map[string]*rt.Tensor, b train.Batch) error {
	if p.training {
		t, err := rt.NewBool(nil, []bool{b.Dropout != nil})
		if err != nil {
			return err
		}
		in[rewrite.TrainingModeInput] = t
	}
	for _, d := range p.dropouts {
		u := make([]float32, b.Size*b.SeqLen*d.width)
		if b.Dropout != nil {
			u = b.Dropout.Uniforms(d.module, b.Size, b.SeqLen, d.firstCol, d.width)
		}
		t, err := rt.NewFloat32([]int64{int64(b.Size), int64(b.SeqLen), int64(d.width)}, u)
		if err != nil {
			return err
		}
		in[d.input] = t
	}
	return nil
}

// forward runs the piece on in (and its factors) and returns its output.
func (p *piece) forward(in map[string]*rt.Tensor) ([]float32, error) {
	feeds := maps(in)
	if err := p.paramFeeds(feeds); err != nil {
		return nil, err
	}
	res, err := p.fwd.Run(feeds, []string{p.out})
	if err != nil {
		return nil, fmt.Errorf("tensorparallel: %s: %w", p.name, err)
	}
	return res[p.out].ToFloat32(), nil
}

// backward runs the piece's vector-Jacobian product on in and gradOut,
// adds the factors' gradients to their Grad, and returns the gradient
// with respect to the piece's input hidden (this rank's part of it);
// wrtGrads, when not nil, gets those of the inputs p.wrt.
func (p *piece) backward(in map[string]*rt.Tensor, gradOut *rt.Tensor, wrtGrads map[string][]float32) ([]float32, error) {
	feeds := maps(in)
	if err := p.paramFeeds(feeds); err != nil {
		return nil, err
	}
	feeds[gradOutName] = gradOut
	res, err := p.vjp.Run(feeds, p.grads)
	if err != nil {
		return nil, fmt.Errorf("tensorparallel: %s: backward: %w", p.name, err)
	}
	for i, prm := range p.params {
		for j, v := range res[p.grads[i]].ToFloat32() {
			prm.Grad[j] += v
		}
	}
	if wrtGrads != nil {
		for i, w := range p.wrt {
			wrtGrads[w] = res[p.grads[len(p.params)+i]].ToFloat32()
		}
	}
	return res[p.grads[len(p.params)+len(p.wrt)]].ToFloat32(), nil
}

// maps returns a copy of in, to which a run's own feeds are added.
func maps(in map[string]*rt.Tensor) map[string]*rt.Tensor {
	out := make(map[string]*rt.Tensor, len(in)+8)
	for k, v := range in {
		out[k] = v
	}
	return out
}
