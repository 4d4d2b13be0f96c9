package graph_test

import (
	"testing"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// metadataString lists a model's metadata entries as key=value, in order.
func metadataString(m *graph.Model) string {
	s := ""
	for _, p := range m.Proto.MetadataProps {
		s += p.Key + "=" + p.Value + ";"
	}
	return s
}

func TestMetadata(t *testing.T) {
	m := graph.New(nil2(), "")
	m.Proto.MetadataProps = []*onnxpb.StringStringEntryProto{
		{Key: "a", Value: "1"}, {Key: "b", Value: "2"}, {Key: "a", Value: "3"}, {Key: "c", Value: "4"},
	}
	if v, ok := m.Metadata("a"); !ok || v != "1" {
		t.Errorf("Metadata(a) = %q, %v; want the first entry, \"1\", true", v, ok)
	}
	if v, ok := m.Metadata("z"); ok || v != "" {
		t.Errorf("Metadata(z) = %q, %v; want \"\", false", v, ok)
	}
	m.SetMetadata("a", "5")
	if got, want := metadataString(m), "b=2;c=4;a=5;"; got != want {
		t.Errorf("after SetMetadata(a, 5): %s, want %s", got, want)
	}
	m.DeleteMetadata("c")
	m.DeleteMetadata("z")
	if got, want := metadataString(m), "b=2;a=5;"; got != want {
		t.Errorf("after DeleteMetadata(c), DeleteMetadata(z): %s, want %s", got, want)
	}
	m.SetMetadata("d", "")
	if v, ok := m.Metadata("d"); !ok || v != "" {
		t.Errorf("Metadata(d) after SetMetadata(d, \"\") = %q, %v; want \"\", true", v, ok)
	}
}
