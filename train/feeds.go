package train

import (
	"strings"

	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// feedKind says where the value of a graph input comes from.
type feedKind int

const (
	feedParam feedKind = iota
	feedInputIDs
	feedAttentionMask
	feedPositionIDs
	feedTokenTypeIDs
	feedLabels
	feedPast     // an empty KV cache: zero past positions
	feedTraining // rewrite.TrainingModeInput, rewrite.PrefixTrainingModeInput
)

// feed is one graph input and how to fill it.
type feed struct {
	info rt.ValueInfo
	kind feedKind
}

// planFeeds decides how to feed each input of a session. params are the
// trainable inputs. Inputs with a default in the model that the trainer
// does not know are left to their defaults; any other unknown input is an
// error.
func planFeeds(inputs []rt.ValueInfo, params map[string]bool) ([]feed, error) {
	var plan []feed
	for _, in := range inputs {
		k, ok := feedKind(0), true
		switch name := in.Name; {
		case params[name]:
			k = feedParam
		case name == "input_ids":
			k = feedInputIDs
		case name == "attention_mask":
			k = feedAttentionMask
		case name == "position_ids":
			k = feedPositionIDs
		case name == "token_type_ids":
			k = feedTokenTypeIDs
		case name == LabelsInput:
			k = feedLabels
		case name == rewrite.TrainingModeInput || name == rewrite.PrefixTrainingModeInput:
			k = feedTraining
		case strings.HasPrefix(name, "past_key_values") || strings.HasPrefix(name, "past_"):
			k = feedPast
		default:
			ok = false
		}
		if !ok {
			if in.Optional {
				continue
			}
			return nil, errorf("the model has an input %s that the trainer does not know how to feed", in)
		}
		plan = append(plan, feed{info: in, kind: k})
	}
	return plan, nil
}

// pastShape returns the shape of an empty KV-cache input for a batch of
// the given size: the batch dimension is the batch, the past-length
// dimension 0, and the other dimensions are the model's fixed sizes.
func pastShape(in rt.ValueInfo, batch int) ([]int64, error) {
	if in.Shape == nil {
		return nil, errorf("KV-cache input %s has no declared shape", in)
	}
	shape := make([]int64, len(in.Shape))
	zero := false
	for i, d := range in.Shape {
		if d >= 0 {
			shape[i] = d
			continue
		}
		p := strings.ToLower(in.DimParams[i])
		switch {
		case strings.Contains(p, "batch"):
			shape[i] = int64(batch)
		case strings.Contains(p, "past") || strings.Contains(p, "seq"):
			shape[i] = 0
			zero = true
		default:
			return nil, errorf("KV-cache input %s: cannot tell what dimension %d is", in, i)
		}
	}
	if !zero {
		return nil, errorf("KV-cache input %s has no past-length dimension", in)
	}
	return shape, nil
}
