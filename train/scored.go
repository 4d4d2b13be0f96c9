package train

// checkScored reports a dataset in which the task's loss scores nothing
// once examples are cut to seqLen tokens: every label -100, one-token
// examples or a sequence length of 1 under a causal loss (which predicts
// token t+1 from t), no class or target. Training it would print a loss of
// 0 and change nothing.
func (d *Dataset) checkScored(task Task, seqLen int) error {
	for _, ex := range d.Examples {
		if Collate([]Example{ex}, seqLen, 0, false).scored(task) > 0 {
			return nil
		}
	}
	why := "every label is -100"
	switch task {
	case SequenceClassification:
		why = `no example has a "label" other than -100`
	case Regression:
		why = `no example has a "target"`
	case CausalLM:
		why = "every label after the first token of an example is -100 (a causal loss predicts token t+1 from t: one-token examples score nothing)"
		if seqLen == 1 {
			why = "a sequence length of 1 leaves a causal loss, which predicts token t+1 from t, nothing to predict"
		}
	}
	return errorf("%s: nothing to predict: %s, so the %s loss scores none of its %d examples", d.Path, why, task, len(d.Examples))
}
