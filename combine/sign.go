package combine

// majoritySign returns, for each element, the sign that ties elects from
// the tasks (PEFT's calculate_majority_sign_mask): with SignTotal the sign
// of the sum of the values, with SignFrequency the sign of the sum of
// their signs; a sum of zero elects +1.
func majoritySign(tasks [][]float64, method MajoritySign) []float64 {
	out := make([]float64, len(tasks[0]))
	for j := range out {
		sum := 0.0
		for _, t := range tasks {
			if method == SignFrequency {
				sum += sign(t[j])
			} else {
				sum += t[j]
			}
		}
		out[j] = 1
		if sum < 0 {
			out[j] = -1
		}
	}
	return out
}

// disjointMerge returns, for each element, the mean of the weighted task
// values whose sign is the elected one (PEFT's disjoint_merge): zeros
// never agree, and an element where none agrees is zero.
func disjointMerge(tasks [][]float64, weights []float64, elected []float64) []float64 {
	out := make([]float64, len(elected))
	for j, s := range elected {
		sum, n := 0.0, 0
		for i, t := range tasks {
			if sign(t[j]) == s {
				sum += weights[i] * t[j]
				n++
			}
		}
		out[j] = sum / float64(max(n, 1))
	}
	return out
}

// sign is torch.sign: -1, 0 or +1.
func sign(v float64) float64 {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}
