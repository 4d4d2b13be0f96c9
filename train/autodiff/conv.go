package autodiff

import (
	"slices"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// Convolution: Conv with any number of spatial axes, strides, pads,
// dilations and auto_pad; group 1 where the weight wants a gradient (the
// factors of a LoRA branch on a Conv layer), any group for the input and
// the bias.

func init() {
	register("", "Conv", entry{grad: gradConv, infer: inferConv})
}

// convGeometry is a Conv's spatial attributes, one entry per spatial axis.
type convGeometry struct {
	kernel, strides, dilations []int64
	pads                       []int64 // begins, then ends
}

// geometry reads n's attributes for a weight w of known rank; pads from
// auto_pad need x's spatial sizes, which ok false reports missing.
func (e *emitter) convGeometry(n *onnxpb.NodeProto) (convGeometry, bool) {
	x, w := n.Input[0], n.Input[1]
	ws := e.shape(w)
	if !ws.static() || ws.rank() < 3 {
		e.fail("the shape of Conv weight %q must be known", w)
		return convGeometry{}, false
	}
	k := ws.rank() - 2
	g := convGeometry{kernel: ws.sizes()[2:], strides: graph.IntsAttr(n, "strides"), dilations: graph.IntsAttr(n, "dilations"), pads: graph.IntsAttr(n, "pads")}
	fill := func(v []int64, n int, def int64) []int64 {
		if len(v) == n {
			return v
		}
		out := make([]int64, n)
		for i := range out {
			out[i] = def
		}
		return out
	}
	g.strides, g.dilations, g.pads = fill(g.strides, k, 1), fill(g.dilations, k, 1), fill(g.pads, 2*k, 0)
	switch pad := graph.StringAttr(n, "auto_pad", "NOTSET"); pad {
	case "NOTSET":
	case "VALID":
		g.pads = fill(nil, 2*k, 0)
	case "SAME_UPPER", "SAME_LOWER":
		xs := e.shape(x)
		if !xs.static() || xs.rank() != k+2 {
			e.fail("Conv %q with auto_pad %s needs the spatial sizes of %q", n.Name, pad, x)
			return convGeometry{}, false
		}
		for i := 0; i < k; i++ {
			in := xs.sizes()[2+i]
			out := (in + g.strides[i] - 1) / g.strides[i]
			total := max(0, (out-1)*g.strides[i]+(g.kernel[i]-1)*g.dilations[i]+1-in)
			small, big := total/2, total-total/2
			if pad == "SAME_UPPER" {
				g.pads[i], g.pads[k+i] = small, big
			} else {
				g.pads[i], g.pads[k+i] = big, small
			}
		}
	default:
		e.fail("Conv %q: auto_pad %q", n.Name, pad)
		return convGeometry{}, false
	}
	return g, true
}

// inferConv: [N, M, out…] with out = ⌊(in + pads − d·(k−1) − 1)/s⌋ + 1
// where the sizes are known, else the rank.
func inferConv(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x, w := f.in(n, 0), f.in(n, 1)
	t := &tinfo{elem: x.elem, shape: unknownShape()}
	if !x.shape.ok || !w.shape.ok || x.shape.rank() != w.shape.rank() || x.shape.rank() < 3 {
		return one(t)
	}
	k := x.shape.rank() - 2
	dims := []dim{x.shape.dims[0], w.shape.dims[0]}
	strides, dilations, pads := graph.IntsAttr(n, "strides"), graph.IntsAttr(n, "dilations"), graph.IntsAttr(n, "pads")
	autoPad := graph.StringAttr(n, "auto_pad", "NOTSET")
	for i := 0; i < k; i++ {
		in, kd := x.shape.dims[2+i], w.shape.dims[2+i]
		s, d, p := int64(1), int64(1), int64(0)
		if len(strides) == k {
			s = strides[i]
		}
		if len(dilations) == k {
			d = dilations[i]
		}
		if len(pads) == 2*k {
			p = pads[i] + pads[k+i]
		}
		switch {
		case !in.static() || !kd.static():
			dims = append(dims, f.freshDim())
		case autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER":
			dims = append(dims, known((in.v+s-1)/s))
		case autoPad == "VALID":
			dims = append(dims, known((in.v-d*(kd.v-1)-1)/s+1))
		default:
			dims = append(dims, known((in.v+p-d*(kd.v-1)-1)/s+1))
		}
	}
	t.shape = rankShape(dims...)
	return one(t)
}

// gradConv: dX is the transposed convolution of dY by W (padded at the
// end where a stride left input rows unread), dW the convolution of X by
// dY with the batch as channels (strides and dilations swapping roles),
// cut to the kernel, and dBias the sum of dY over all but the channels.
func gradConv(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
	x, w, g := n.Input[0], n.Input[1], dy[0]
	geo, ok := e.convGeometry(n)
	if !ok {
		return nil
	}
	k := len(geo.kernel)
	group := graph.IntAttr(n, "group", 1)
	out := make([]string, len(n.Input))
	attrs := func(strides, dilations []int64) []*onnxpb.AttributeProto {
		return []*onnxpb.AttributeProto{graph.AttrInts("strides", strides...), graph.AttrInts("dilations", dilations...), graph.AttrInts("pads", geo.pads...)}
	}
	if need[0] {
		strided := slices.ContainsFunc(geo.strides, func(s int64) bool { return s > 1 })
		ct := attrs(geo.strides, geo.dilations)
		if strided {
			// ⌊…/s⌋ may leave the last rows of X out of every window, so
			// the transposed convolution keeps every row it reaches (no end
			// pads), and a Pad then cuts or extends it to X's size: the
			// rows no window read get zeros.
			begins := slices.Clone(geo.pads)
			clear(begins[k:])
			ct[2] = graph.AttrInts("pads", begins...)
		}
		gx := e.op("ConvTranspose", []string{g, w}, append(ct, graph.AttrInt("group", group))...)
		if strided {
			spatial := func(v string) string { return e.op("Slice", []string{e.shapeOf(v), e.ints(2), e.ints(int64(2 + k))}) }
			ends := e.sub(spatial(x), spatial(gx))
			gx = e.op("Pad", []string{gx, e.concatInts(e.ints(make([]int64, 2+2+k)...), ends)})
		}
		e.inf.setShape(gx, e.shape(x))
		out[0] = gx
	}
	if need[1] {
		if group != 1 {
			e.fail("the weight gradient of Conv %q with group %d is not supported", n.Name, group)
			return nil
		}
		perm := make([]int64, k+2)
		for i := range perm {
			perm[i] = int64(i)
		}
		perm[0], perm[1] = 1, 0
		full := e.op("Conv", []string{e.transpose(x, perm...), e.transpose(g, perm...)}, attrs(geo.dilations, geo.strides)...)
		axes := make([]int64, k)
		for i := range axes {
			axes[i] = int64(2 + i)
		}
		cut := e.op("Slice", []string{full, e.ints(make([]int64, k)...), e.ints(geo.kernel...), e.ints(axes...)})
		gw := e.transpose(cut, perm...)
		e.inf.setShape(gw, e.shape(w))
		out[1] = gw
	}
	if len(n.Input) > 2 && n.Input[2] != "" && need[2] {
		axes := []int64{0}
		for i := 0; i < k; i++ {
			axes = append(axes, int64(2+i))
		}
		out[2] = e.reduceSum(g, axes, false)
	}
	return out
}
