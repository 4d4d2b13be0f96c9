package train

import (
	"fmt"
	"strings"

	"github.com/peftonnx/peftonnx/feed"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// DetectTask says which task fits a model, from its outputs, and which
// output the loss scores: an output "logits" (else the first whose name
// holds "logits") of rank 3 ([batch, seq, vocab]) is a causal LM, one of
// rank 2 ([batch, classes]) a sequence classifier. A model without logits
// is trained by regression (MSE) on its first output, such as a bare
// transformer's last hidden state. ExplainTask also says why, and warns.
func DetectTask(m *graph.Model) (Task, string, error) {
	c, err := ExplainTask(m, "")
	return c.Task, c.Output, err
}

// TaskChoice is the task that a trainer runs, the output its loss scores,
// and why.
type TaskChoice struct {
	Task   Task
	Output string
	// Reason says why the task was chosen where it was detected (as
	// ExplainTask does), and is "" where the caller named both.
	Reason string
	// Warnings are what the user should know about the choice: a model
	// that looks like an encoder (no causal mask, token types) trained as
	// a causal LM.
	Warnings []string
}

// ExplainTask is DetectTask with the reasons: it picks the task for
// output ("": the model's logits, else its first output), says why, and
// warns where the choice may not be what the user wants.
func ExplainTask(m *graph.Model, output string) (TaskChoice, error) {
	g := m.Graph()
	named := output != ""
	if output == "" {
		output = logitsOutput(m)
	}
	if output == "" {
		if len(g.Output) == 0 {
			return TaskChoice{}, errorf("the model has no outputs")
		}
		output = g.Output[0].Name
	}
	vi, defined := findValue(m, output)
	if !defined {
		return TaskChoice{}, errorf("the model has no value %q", output)
	}
	rank := -1
	var dims []int64
	if vi != nil {
		if _, d, ok := graph.ValueShape(vi); ok {
			rank, dims = len(d), d
		}
	}
	if !strings.Contains(strings.ToLower(output), "logits") {
		what := "output"
		if !named {
			what = "first output"
		}
		return TaskChoice{Task: Regression, Output: output,
			Reason: fmt.Sprintf("the model has no logits output, so its %s %s is fitted to each example's \"target\" by MSE; name the task (causal, token, classification) and the output to train otherwise", what, describeValue(output, dims, rank))}, nil
	}
	switch rank {
	case 3:
		c := TaskChoice{Task: CausalLM, Output: output, Reason: fmt.Sprintf("%s is [batch, sequence, vocab]: next-token prediction, labels shifted by one", describeValue(output, dims, rank))}
		if hints := encoderHints(m); len(hints) > 0 {
			c.Warnings = append(c.Warnings, fmt.Sprintf("the model looks like an encoder (%s), but is trained as a causal LM, each position scored against the next token: for a masked LM or a token classifier, use the token loss, which does not shift the labels", strings.Join(hints, "; ")))
		}
		return c, nil
	case 2:
		return TaskChoice{Task: SequenceClassification, Output: output, Reason: fmt.Sprintf("%s is [batch, classes]: one class per example", describeValue(output, dims, rank))}, nil
	case -1:
		return TaskChoice{}, errorf("the model's %q has no declared shape: name the task (%s, %s, %s or %s)", output, CausalLM, TokenClassification, SequenceClassification, Regression)
	}
	return TaskChoice{}, errorf("the model's %q has rank %d: want 3 (causal LM, or token) or 2 (classification), or name the task", output, rank)
}

// logitsOutput returns "logits" where the model has that value, else its
// first output whose name holds "logits" (any case), else "".
func logitsOutput(m *graph.Model) string {
	if _, ok := findValue(m, "logits"); ok {
		return "logits"
	}
	for _, o := range m.Graph().Output {
		if strings.Contains(strings.ToLower(o.Name), "logits") {
			return o.Name
		}
	}
	return ""
}

// describeValue writes a value with its declared dims: logits [? ? 32].
func describeValue(name string, dims []int64, rank int) string {
	if rank < 0 {
		return name
	}
	s := make([]string, len(dims))
	for i, d := range dims {
		s[i] = "?"
		if d >= 0 {
			s[i] = fmt.Sprint(d)
		}
	}
	return name + " [" + strings.Join(s, " ") + "]"
}

// encoderHints says why a model with [batch, sequence, vocab] logits looks
// like an encoder rather than a decoder: it takes token types, or it has
// no KV cache and builds no causal mask. Empty where it looks like a
// decoder.
func encoderHints(m *graph.Model) []string {
	inputs, outputs := modelInputs(m)
	plan := rt.FeedPlan(inputs, outputs)
	var hints []string
	if s, ok := plan.First(feed.TokenTypes); ok {
		hints = append(hints, "it takes token types, "+s.Name)
	}
	if _, ok := plan.First(feed.Cache); !ok && !buildsCausalMask(m) {
		hints = append(hints, "it has no KV cache and builds no causal mask")
	}
	return hints
}

// buildsCausalMask reports whether the graph has what a causal mask is
// made of: a Trilu, causal fused attention (GroupQueryAttention,
// Attention with unidirectional=1), or a comparison that reads a Range
// within a few steps (positions against positions).
func buildsCausalMask(m *graph.Model) bool {
	for _, n := range m.Graph().Node {
		switch n.OpType {
		case "Trilu", "GroupQueryAttention":
			return true
		case "Attention":
			if graph.IntAttr(n, "unidirectional", 0) == 1 {
				return true
			}
		case "Less", "LessOrEqual", "Greater", "GreaterOrEqual":
			for _, in := range n.Input {
				if readsRange(m, in, 4) {
					return true
				}
			}
		}
	}
	return false
}

// readsRange reports whether value v is a Range's output, or computed from
// one within depth nodes.
func readsRange(m *graph.Model, v string, depth int) bool {
	p := m.Producer(v)
	if p == nil || depth == 0 {
		return false
	}
	if p.OpType == "Range" {
		return true
	}
	for _, in := range p.Input {
		if readsRange(m, in, depth-1) {
			return true
		}
	}
	return false
}

// resolveTask fills in o.Task and o.Output where they are empty, and says
// what it chose and why.
func resolveTask(m *graph.Model, o *Options) (TaskChoice, error) {
	if o.Task != "" && o.Output == "" && o.Task != Regression {
		o.Output = "logits"
		if _, ok := findValue(m, "logits"); !ok {
			if out := logitsOutput(m); out != "" {
				o.Output = out
			}
		}
	}
	if o.Task != "" && o.Output != "" {
		return TaskChoice{Task: o.Task, Output: o.Output}, nil
	}
	c, err := ExplainTask(m, o.Output)
	if err != nil {
		return TaskChoice{}, err
	}
	if o.Task == "" {
		o.Task = c.Task
	} else {
		c.Task, c.Reason, c.Warnings = o.Task, "", nil
	}
	o.Output = c.Output
	return c, nil
}

// ModelVocab returns the number of token ids a model can embed: the rows
// of the table that a Gather reads the token ids from (input_ids, or its
// other names: package feed), directly or through
// Slice, Reshape, Unsqueeze, Squeeze, Flatten, Cast or Identity, else the last
// dimension of a [batch, seq, vocab] "logits" output. ok is false when
// neither tells.
func ModelVocab(m *graph.Model) (vocab int, ok bool) {
	if t := rewrite.TokenEmbedding(m, tokenIDInputs(m)...); t != nil {
		return int(t.Dims[0]), true
	}
	if vi, _ := findValue(m, "logits"); vi != nil {
		if _, dims, ok := graph.ValueShape(vi); ok && len(dims) == 3 && dims[2] > 0 {
			return int(dims[2]), true
		}
	}
	return 0, false
}

// tokenIDInputs returns the names of the model's token-id inputs
// (input_ids, input_word_ids, …; package feed), or input_ids where it has
// none of those.
func tokenIDInputs(m *graph.Model) []string {
	var names []string
	for _, v := range m.Graph().Input {
		in := feed.FromValueInfo(v, false)
		if s, _ := feed.Classify([]feed.Input{in}, nil).First(feed.TokenIDs); s.Name != "" {
			names = append(names, s.Name)
		}
	}
	if len(names) == 0 {
		names = []string{"input_ids"}
	}
	return names
}
