package combine

// mergeTasks combines equally long task tensors with one weight each, as
// PEFT's merge_utils does for method: task_arithmetic (linear),
// magnitude_prune, ties, dare_linear and dare_ties. mask draws DARE's
// random masks, task after task.
func mergeTasks(method Method, tasks [][]float64, weights []float64, o *Options, mask maskSource) []float64 {
	pruned := make([][]float64, len(tasks))
	for i, t := range tasks {
		switch method {
		case MagnitudePrune, TIES:
			pruned[i] = pruneMagnitude(t, o.Density)
		case DARELinear, DARETIES:
			pruned[i] = pruneRandom(t, o.Density, mask)
		default:
			pruned[i] = t
		}
	}
	if method.elects() {
		return disjointMerge(pruned, weights, majoritySign(pruned, o.sign()))
	}
	return weightedSum(pruned, weights)
}

// weightedSum returns Σ weights[i]·tasks[i] (PEFT's task_arithmetic).
func weightedSum(tasks [][]float64, weights []float64) []float64 {
	out := make([]float64, len(tasks[0]))
	for i, t := range tasks {
		for j, v := range t {
			out[j] += weights[i] * v
		}
	}
	return out
}
