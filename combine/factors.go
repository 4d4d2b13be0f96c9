package combine

import "math"

// factorModule combines one module's factors separately, as PEFT's
// _generalized_task_arithmetic_weighted_adapter does for linear, ties,
// dare_linear, dare_ties and magnitude_prune: with c_i = w_i·s_i, the
// A_i are merged with the weights sgn(c_i)·√|c_i| and the B_i with
// √|c_i| (the sign goes on one side only), A's masks drawn before B's.
// Every part must have the same rank.
func (c *combiner) factorModule(method Method, module string, parts []part, mask maskSource) (matrix, matrix, error) {
	first := parts[0]
	tasksA := make([][]float64, len(parts))
	tasksB := make([][]float64, len(parts))
	weightsA := make([]float64, len(parts))
	weightsB := make([]float64, len(parts))
	for i, p := range parts {
		if p.a.cols != first.a.cols {
			return matrix{}, matrix{}, errorf("module %q has rank %d in %s and %d in %s: %s combines the factors element by element and needs equal ranks (cat and svd do not)",
				module, first.a.cols, c.name(first.input), p.a.cols, c.name(p.input), method)
		}
		root := math.Sqrt(math.Abs(p.coef))
		weightsA[i], weightsB[i] = root, root
		if p.coef < 0 {
			weightsA[i] = -root
		}
		tasksA[i], tasksB[i] = p.a.data, p.b.data
	}
	a := mergeTasks(method, tasksA, weightsA, c.o, mask)
	b := mergeTasks(method, tasksB, weightsB, c.o, mask)
	return matrix{rows: first.a.rows, cols: first.a.cols, data: a}, matrix{rows: first.b.rows, cols: first.b.cols, data: b}, nil
}
