package train

import "math"

// clipEps is the term torch.nn.utils.clip_grad_norm_ adds to the norm.
const clipEps = 1e-6

// GradNorm returns the global L2 norm of the gradients of params: the
// norm of the per-parameter norms, as torch computes it. Each partial sum
// is taken in float64 and each norm rounded to float32, as torch's float32
// norms are.
func GradNorm(params []*Param) float64 {
	var total float64
	for _, p := range params {
		var s float64
		for _, g := range p.Grad {
			s += float64(g) * float64(g)
		}
		n := float64(float32(math.Sqrt(s)))
		total += n * n
	}
	return float64(float32(math.Sqrt(total)))
}

// ClipGradNorm scales the gradients of params in place so that their global
// L2 norm is at most maxNorm, as torch.nn.utils.clip_grad_norm_ does:
// coef = maxNorm / (norm + 1e-6), clamped to 1, multiplies every gradient.
// It returns the norm before clipping. A maxNorm <= 0 turns clipping off
// (HF Trainer's max_grad_norm=0) and only measures the norm. A NaN or
// infinite norm leaves the gradients alone; the caller decides what to do
// (torch would multiply them by NaN).
func ClipGradNorm(params []*Param, maxNorm float64) float64 {
	norm := GradNorm(params)
	if maxNorm <= 0 || math.IsNaN(norm) || math.IsInf(norm, 0) {
		return norm
	}
	coef := float32(maxNorm) / (float32(norm) + clipEps)
	if coef >= 1 {
		return norm // torch multiplies by the clamped 1: a no-op
	}
	for _, p := range params {
		for i := range p.Grad {
			p.Grad[i] *= coef
		}
	}
	return norm
}
