package rewrite

import (
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// A convolution layer is a Conv whose weight W [out, in, k…] is a
// floating-point initializer (Conv1d, Conv2d and Conv3d alike). Its LoRA
// branch, as HF PEFT's lora.Conv computes it, is
//
//	y = conv(x, W) + conv(conv(x, A), B)·s
//
// where A [r, in, k…] is a Conv with the layer's kernel, strides, pads,
// dilations and auto_pad (r output channels), and B [out, r, 1…] a 1×1
// Conv. Those are the shapes of HF PEFT's lora_A.weight and
// lora_B.weight, and ONNX's Conv weight layout, so graph and file agree.
// A starts Kaiming-uniform over its fan-in in·k…, B at zero. Merge adds
// s·B·A, read as [out, r]·[r, in·k…], to W. Grouped convolutions are
// refused: the branch is built for group 1.

// convOf reports whether n is a convolution layer and describes it.
func convOf(m *graph.Model, n *onnxpb.NodeProto) (Linear, bool) {
	if (n.Domain != "" && n.Domain != "ai.onnx") || n.OpType != "Conv" || len(n.Input) < 2 || len(n.Output) != 1 {
		return Linear{}, false
	}
	if n.Input[0] == "" || n.Input[1] == "" || m.Initializer(n.Input[0]) != nil {
		return Linear{}, false
	}
	for rank := 3; rank <= 5; rank++ {
		path, ok := weightChainOfRank(m, n.Input[1], rank)
		if !ok || path.transposes != 0 {
			continue
		}
		w := path.w
		l := path.linear(n, n.Input[0])
		l.Kind = KindConv
		l.In, l.Out, l.Kernel = w.Dims[1], w.Dims[0], append([]int64(nil), w.Dims[2:]...)
		l.Bias = initializerBias(m, n)
		return l, true
	}
	return Linear{}, false
}

// convAttrs returns the attributes of Conv n that A's Conv takes over: all
// but group.
func convAttrs(n *onnxpb.NodeProto) []*onnxpb.AttributeProto {
	var out []*onnxpb.AttributeProto
	for _, a := range n.Attribute {
		switch a.Name {
		case "auto_pad", "dilations", "kernel_shape", "pads", "strides":
			out = append(out, a)
		}
	}
	return out
}

// kernelSize returns the number of weights per input channel of a kernel.
func kernelSize(kernel []int64) int64 {
	k := int64(1)
	for _, d := range kernel {
		k *= d
	}
	return k
}

// asMatrixFold turns the fold of a convolution into a linear layer's:
// A [r, in·k…] becomes [in·k…, r] and B [out, r] becomes [r, out], for a
// weight read as [out, in·k…]. Folds of other layers come back as they are.
func (f fold) asMatrixFold() fold {
	if f.l.Kind != KindConv {
		return f
	}
	l := f.l.asMatrix()
	r := len(f.b) / int(l.Out)
	f.a = transpose(f.a, r, int(l.In))
	f.b = transpose(f.b, int(l.Out), r)
	f.l, f.rk = l, r
	return f
}

// asMatrix returns a convolution as the linear layer of its weight read
// as [out, in·k…]: In·k… input features, the weight transposed. Other
// layers come back as they are.
func (l Linear) asMatrix() Linear {
	if l.Kind == KindConv {
		l.In *= kernelSize(l.Kernel)
		l.WeightTransposed = true
	}
	return l
}
