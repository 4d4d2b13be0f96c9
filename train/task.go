package train

import (
	"github.com/peftonnx/peftonnx/graph"
)

// DetectTask says which task fits a model, from its outputs, and which
// output the loss scores: an output "logits" of rank 3 ([batch, seq,
// vocab]) is a causal LM, one of rank 2 ([batch, classes]) a sequence
// classifier. A model without "logits" is trained by regression (MSE) on
// its first output, such as a bare transformer's last hidden state.
func DetectTask(m *graph.Model) (Task, string, error) {
	return detectTask(m, "")
}

// detectTask is DetectTask for a given output ("": the default one).
func detectTask(m *graph.Model, output string) (Task, string, error) {
	g := m.Graph()
	if output == "" {
		if _, ok := findValue(m, "logits"); ok {
			output = "logits"
		} else if len(g.Output) > 0 {
			output = g.Output[0].Name
		} else {
			return "", "", errorf("the model has no outputs")
		}
	}
	vi, defined := findValue(m, output)
	if !defined {
		return "", "", errorf("the model has no value %q", output)
	}
	if output != "logits" {
		return Regression, output, nil
	}
	rank := -1
	if vi != nil {
		if _, dims, ok := graph.ValueShape(vi); ok {
			rank = len(dims)
		}
	}
	switch rank {
	case 3:
		return CausalLM, output, nil
	case 2:
		return SequenceClassification, output, nil
	case -1:
		return "", "", errorf("the model's %q has no declared shape: name the task (%s, %s or %s)", output, CausalLM, SequenceClassification, Regression)
	}
	return "", "", errorf("the model's %q has rank %d: want 3 (causal LM) or 2 (classification), or name the task", output, rank)
}

// resolveTask fills in o.Task and o.Output where they are empty.
func resolveTask(m *graph.Model, o *Options) error {
	if o.Task != "" && o.Output == "" && o.Task != Regression {
		o.Output = "logits"
	}
	if o.Task != "" && o.Output != "" {
		return nil
	}
	task, out, err := detectTask(m, o.Output)
	if err != nil {
		return err
	}
	if o.Task == "" {
		o.Task = task
	}
	o.Output = out
	return nil
}

// ModelVocab returns the number of token ids a model can embed: the rows
// of the table that a Gather reads input_ids from (directly or through
// Slice, Reshape, Unsqueeze, Squeeze, Flatten, Cast or Identity), else the last
// dimension of a [batch, seq, vocab] "logits" output. ok is false when
// neither tells.
func ModelVocab(m *graph.Model) (vocab int, ok bool) {
	seen := map[string]bool{}
	queue := []string{"input_ids"}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		if seen[v] {
			continue
		}
		seen[v] = true
		for _, n := range m.Consumers(v) {
			switch n.OpType {
			case "Gather":
				if len(n.Input) < 2 || n.Input[1] != v || graph.IntAttr(n, "axis", 0) != 0 {
					continue
				}
				if t := m.Initializer(n.Input[0]); t != nil && len(t.Dims) == 2 && t.Dims[0] > 0 {
					return int(t.Dims[0]), true
				}
			case "Slice", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Cast", "Identity":
				if len(n.Input) > 0 && n.Input[0] == v && len(n.Output) > 0 {
					queue = append(queue, n.Output[0])
				}
			}
		}
	}
	if vi, _ := findValue(m, "logits"); vi != nil {
		if _, dims, ok := graph.ValueShape(vi); ok && len(dims) == 3 && dims[2] > 0 {
			return int(dims[2]), true
		}
	}
	return 0, false
}
