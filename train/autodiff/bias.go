package autodiff

import (
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// com.microsoft BiasAdd, X + bias + skip, as ONNX Runtime's transformer
// optimizer fuses it (Stable Diffusion's UNet), decomposed into two Adds.

func init() {
	register("com.microsoft", "BiasAdd", entry{decompose: decomposeBiasAdd, infer: inferSame})
}

// decomposeBiasAdd writes Y = X + bias + skip as Add(Add(X, bias), skip).
func decomposeBiasAdd(e *emitter, n *onnxpb.NodeProto) {
	x, bias, skip := inputOr(n, 0), inputOr(n, 1), inputOr(n, 2)
	if x == "" || bias == "" || skip == "" {
		e.fail("BiasAdd takes X, bias and skip")
		return
	}
	e.identityTo(e.add(e.add(x, bias), skip), n.Output[0])
}
