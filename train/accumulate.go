package train

// AccumulateGrad adds scale·grads[i] to params[i].Grad, element by element.
// grads holds one gradient per parameter, in the order of params.
//
// Gradient accumulation over k micro-batches is a sum of such calls
// between ZeroGrad and the optimizer step. With scale = 1/k the result is
// the mean of the micro-batch gradients: HF Trainer's behavior for models
// that do not take num_items_in_batch. With scale = nᵢ/N, where nᵢ counts
// the labelled tokens of micro-batch i and N those of all k, the result is
// the gradient of the mean loss over every token in the accumulated batch,
// which is what recent HF Trainer versions compute for causal LMs
// (see Batch.LabelTokens).
func AccumulateGrad(params []*Param, grads [][]float32, scale float32) error {
	if len(grads) != len(params) {
		return errorf("accumulate: %d gradients for %d parameters", len(grads), len(params))
	}
	for i, p := range params {
		g := grads[i]
		if len(g) != len(p.Grad) {
			return errorf("accumulate: gradient of %q has %d values, parameter %d", p.Name, len(g), len(p.Grad))
		}
		if scale == 1 {
			for j, v := range g {
				p.Grad[j] += v
			}
			continue
		}
		for j, v := range g {
			p.Grad[j] += float32(scale * v)
		}
	}
	return nil
}
