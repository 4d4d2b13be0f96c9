package autodiff

import (
	"slices"
	"strings"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// StopGradientKey is the key of a model metadata entry that lists, comma
// separated, values that Build treats as constants: no gradient flows
// into them, as torch's detach. A loss that computes part of its own
// gradient in the forward pass (train's chunked causal-LM loss) marks so
// the values that carry it; Build honours the entry whoever calls it.
// ONNX Runtime ignores it.
const StopGradientKey = "peftonnx.autodiff.stop_gradient"

// MarkStopGradient adds values to m's StopGradientKey entry.
func MarkStopGradient(m *graph.Model, values ...string) {
	var entry *onnxpb.StringStringEntryProto
	for _, p := range m.Proto.MetadataProps {
		if p.Key == StopGradientKey {
			entry = p
		}
	}
	if entry == nil {
		entry = &onnxpb.StringStringEntryProto{Key: StopGradientKey}
		m.Proto.MetadataProps = append(m.Proto.MetadataProps, entry)
	}
	names := splitNames(entry.Value)
	for _, v := range values {
		if !slices.Contains(names, v) {
			names = append(names, v)
		}
	}
	entry.Value = strings.Join(names, ",")
}

// stopGradients returns the values m's StopGradientKey entry lists.
func stopGradients(m *graph.Model) map[string]bool {
	out := map[string]bool{}
	for _, p := range m.Proto.MetadataProps {
		if p.Key == StopGradientKey {
			for _, v := range splitNames(p.Value) {
				out[v] = true
			}
		}
	}
	return out
}

// splitNames splits a comma-separated list, dropping empty names.
func splitNames(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}
