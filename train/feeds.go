package train

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/feed"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// feedKind says where the value of a graph input comes from.
type feedKind int

const (
	feedParam     feedKind = iota
	feedLabels             // the loss's labels
	feedTraining           // rewrite.TrainingModeInput, rewrite.PrefixTrainingModeInput
	feedIDs                // the examples' token ids
	feedMask               // 1 at tokens, 0 at padding
	feedPositions          // 0, 1, 2, … along each row
	feedZeros              // token types, an empty KV cache, a zero state
	feedField              // a data field, as it is (Batch.Inputs)
	feedDropout            // a seeded dropout's uniform draws (Batch.Dropout)
)

// inputFeed is one graph input and how to fill it.
type inputFeed struct {
	info rt.ValueInfo
	kind feedKind
	slot feed.Slot
	// field is the data field that feeds the input (feedField), and
	// perToken whether it has a value per token.
	field    string
	perToken bool
}

// String says what the input is fed, for the notes a run prints once.
func (f inputFeed) String() string {
	in := feed.Input(f.info).String()
	switch f.kind {
	case feedIDs:
		return in + ": the examples' token ids"
	case feedField:
		return fmt.Sprintf("%s: the data's %q", in, f.field)
	case feedMask, feedPositions, feedZeros:
		return fmt.Sprintf("%s: %s, by default (the data gives no %q)", in, f.slot.Default(), f.info.Name)
	}
	return in
}

// noted reports whether a run names the feed in its notes: every input
// fed from a data field or a default, and token ids of another name or
// type than input_ids int64.
func (f inputFeed) noted() bool {
	switch f.kind {
	case feedIDs:
		return f.info.Name != "input_ids" || f.info.DType != dtype.Int64
	case feedField, feedMask, feedPositions, feedZeros:
		return true
	}
	return false
}

// modelInputs describes the graph inputs of m, as a session on it would
// see them: inputs with a default initializer are optional from IR 4 on,
// and before IR 4 constants, not inputs.
func modelInputs(m *graph.Model) (inputs, outputs []rt.ValueInfo) {
	g := m.Graph()
	for _, v := range g.Input {
		hasDefault := m.Initializer(v.GetName()) != nil
		if hasDefault && m.Proto.GetIrVersion() < 4 {
			continue
		}
		inputs = append(inputs, rt.ValueInfo(feed.FromValueInfo(v, hasDefault)))
	}
	for _, v := range g.Output {
		outputs = append(outputs, rt.ValueInfo(feed.FromValueInfo(v, false)))
	}
	return inputs, outputs
}

// planFeeds decides how to feed each input of a model. params are the
// trainable inputs; fields the data fields that every example has. A data
// field named after an input (or, for a mask, token types or positions,
// with its HF name) feeds it as it is; the token ids, a mask, positions,
// token types, KV caches and states that the data does not give get their
// defaults (package feed); inputs with a default in the model are left to
// it. Any other input is an error that says how to give it.
func planFeeds(inputs, outputs []rt.ValueInfo, params map[string]bool, fields []string) ([]inputFeed, error) {
	roles := rt.FeedPlan(inputs, outputs)
	byField := map[string]string{} // input name → field
	for _, f := range fields {
		s, ok := roles.ForField(f)
		if !ok || s.Role == feed.TokenIDs || params[s.Name] || s.Name == LabelsInput {
			continue
		}
		if prev, dup := byField[s.Name]; dup && (prev == s.Name || f != s.Name) {
			continue // the field of the input's own name wins, else the first
		}
		byField[s.Name] = f
	}
	var plan []inputFeed
	ids := false
	for _, in := range inputs {
		slot, _ := roles.Lookup(in.Name)
		f := inputFeed{info: in, slot: slot}
		field, fromData := byField[in.Name]
		switch name := in.Name; {
		case params[name]:
			f.kind = feedParam
		case name == LabelsInput:
			f.kind = feedLabels
		case name == rewrite.TrainingModeInput || name == rewrite.PrefixTrainingModeInput:
			f.kind = feedTraining
		case strings.HasSuffix(name, DropoutUniformSuffix) && len(in.Shape) == 3 && in.Shape[2] > 0:
			f.kind = feedDropout
		case fromData:
			f.kind, f.field = feedField, field
			perToken, err := perTokenInput(slot)
			if err != nil {
				return nil, err
			}
			f.perToken = perToken
		case slot.Role == feed.TokenIDs && !ids:
			f.kind, ids = feedIDs, true
		case slot.Role == feed.AttentionMask:
			f.kind = feedMask
		case slot.Role == feed.Positions:
			f.kind = feedPositions
		case slot.Role == feed.TokenTypes || slot.Role == feed.Cache || slot.Role == feed.State:
			f.kind = feedZeros
		case in.Optional:
			continue
		case slot.Role == feed.CrossCache:
			return nil, errorf("the model's input %s is a cross-attention cache (the encoder's keys or values), which has no default: give it as a JSONL field %q", feed.Input(in), name)
		default:
			return nil, errorf("the model has an input %s that the data does not give and that has no default: give it as a JSONL field %q (a flat list of numbers)", feed.Input(in), name)
		}
		plan = append(plan, f)
	}
	return plan, nil
}

// perTokenInput says whether a data field for the input has one value per
// token (a mask, token types, positions, or an input [batch, sequence,
// …]) or a fixed number per example (an input whose dimensions after the
// batch are all fixed).
func perTokenInput(s feed.Slot) (bool, error) {
	switch s.Role {
	case feed.AttentionMask, feed.TokenTypes, feed.Positions:
		return true, nil
	}
	if len(s.Shape) == 2 && s.Shape[1] < 0 {
		return true, nil
	}
	if len(s.Shape) >= 1 && !slices.Contains(s.Shape[1:], -1) {
		return false, nil
	}
	return false, errorf("the data gives the model's input %s, but it is neither [batch, sequence] nor of a fixed size per example", feed.Input(s.Input))
}

// fieldNames returns the data fields that a dataset's examples carry,
// sorted.
func fieldNames(d *Dataset) []string {
	seen := map[string]bool{}
	for _, ex := range d.Examples {
		for k := range ex.Fields {
			seen[k] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// dataInputs returns the data fields that plan feeds, for a Loader.
func dataInputs(plan []inputFeed) []DataInput {
	var out []DataInput
	for _, f := range plan {
		if f.kind == feedField {
			out = append(out, DataInput{Field: f.field, PerToken: f.perToken})
		}
	}
	return out
}

// checkFields checks the values of every field that plan feeds, in every
// example of d: present in each line, one per token or the input's size
// per example, and of the input's element type (whole numbers in range
// for integer inputs).
func checkFields(d *Dataset, plan []inputFeed) error {
	for _, f := range plan {
		if f.kind != feedField {
			continue
		}
		per := 0
		if !f.perToken {
			per = int(graph.NumElements(f.info.Shape[1:]))
		}
		first := -1
		for _, ex := range d.Examples {
			v, ok := ex.Fields[f.field]
			if !ok {
				if first < 0 {
					for j, other := range d.Examples {
						if _, ok := other.Fields[f.field]; ok {
							first = j
							break
						}
					}
				}
				return errorf("%s:%d: no %q, which line %d gives to the model's input %s: every example must give it", d.Path, ex.Line, f.field, d.Examples[first].Line, feed.Input(f.info))
			}
			switch {
			case f.perToken && len(v) != len(ex.InputIDs):
				return errorf("%s:%d: %q has %d values, input_ids %d: it feeds %s, one value per token", d.Path, ex.Line, f.field, len(v), len(ex.InputIDs), feed.Input(f.info))
			case !f.perToken && len(v) != per:
				return errorf("%s:%d: %q has %d values: it feeds %s, %d per example", d.Path, ex.Line, f.field, len(v), feed.Input(f.info), per)
			}
			if _, err := rt.FromFloat64s(f.info.DType, []int64{int64(len(v))}, v); err != nil {
				return errorf("%s:%d: %q, for the model's input %s: %w", d.Path, ex.Line, f.field, feed.Input(f.info), err)
			}
		}
	}
	return nil
}

// onGradientBuild, when set, is called as the trainer starts building its
// gradient graph: tests see whether an error came before it.
var onGradientBuild func()

// planInputs plans the feeds of the model with its loss (see planFeeds),
// and checks the data fields it feeds in the training and eval data.
func (t *Trainer) planInputs(params []string) error {
	inputs, outputs := modelInputs(t.withLoss)
	set := make(map[string]bool, len(params))
	for _, p := range params {
		set[p] = true
	}
	plan, err := planFeeds(inputs, outputs, set, fieldNames(t.data))
	if err != nil {
		return err
	}
	for _, d := range []*Dataset{t.data, t.opts.Eval} {
		if d != nil {
			if err := checkFields(d, plan); err != nil {
				return err
			}
		}
	}
	t.feeds = plan
	return nil
}

// checkFirstBatch builds the feeds of the first batch and checks each
// against the input it feeds, in the element type, rank and sizes the
// model declares; the error names the input, its declared type and shape,
// and what the batch gives.
func (t *Trainer) checkFirstBatch() error {
	b := t.firstBatch()
	dims := outputDims(t.withLoss, t.opts.Output)
	var c feed.Checker
	for _, f := range t.feeds {
		if f.kind == feedParam || f.kind == feedTraining || f.kind == feedDropout {
			continue
		}
		v, err := batchValues(f, b, t.opts.Task, dims)
		if err != nil {
			return errorf("first batch: input %s: %w", feed.Input(f.info), err)
		}
		x, err := v.tensor(f.info.DType)
		if err != nil {
			return errorf("first batch: input %s: %w", feed.Input(f.info), err)
		}
		if err := c.Check(feed.Input(f.info), x.DType(), x.Shape()); err != nil {
			var me *feed.MismatchError
			if errors.As(err, &me) {
				return errorf("the first batch does not fit the model: %s%s", me.Detail(), fixedSizeHint(f, me))
			}
			return errorf("%w", err)
		}
	}
	return nil
}

// fixedSizeHint says how to meet a fixed batch size or sequence length
// that a model declares, where that is what did not fit.
func fixedSizeHint(f inputFeed, me *feed.MismatchError) string {
	if f.slot.BatchAxis != 0 || len(me.Shape) != len(f.info.Shape) {
		return ""
	}
	switch {
	case f.info.Shape[0] >= 0 && me.Shape[0] != f.info.Shape[0]:
		return fmt.Sprintf(" (the model takes batches of exactly %d: set the batch size to it)", f.info.Shape[0])
	case f.slot.LengthAxis == 1 && f.info.Shape[1] >= 0 && me.Shape[1] != f.info.Shape[1]:
		return fmt.Sprintf(" (the model takes exactly %d tokens per example: set the sequence length to it and pad every batch to it)", f.info.Shape[1])
	}
	return ""
}

// FeedNotes says, one line per input, how the trainer feeds the inputs
// that come from a data field or a default (and the token ids, where the
// model names or types them otherwise than input_ids int64): the notes a
// caller prints once.
//
// The KV caches, fed empty, share one line.
func (t *Trainer) FeedNotes() []string {
	var notes, caches []string
	for _, f := range t.feeds {
		switch {
		case f.kind == feedZeros && f.slot.Role == feed.Cache:
			caches = append(caches, f.info.Name)
		case f.noted():
			notes = append(notes, f.String())
		}
	}
	switch len(caches) {
	case 0:
	case 1:
		notes = append(notes, caches[0]+": an empty KV cache (past length 0), by default")
	default:
		notes = append(notes, fmt.Sprintf("%s … %s (%d inputs): empty KV caches (past length 0), by default", caches[0], caches[len(caches)-1], len(caches)))
	}
	return notes
}

// fields returns the data fields that the trainer's plan feeds.
func (t *Trainer) fields() []string {
	var names []string
	for _, f := range t.feeds {
		if f.kind == feedField {
			names = append(names, f.field)
		}
	}
	return names
}
