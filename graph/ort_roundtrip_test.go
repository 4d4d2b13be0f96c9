package graph_test

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// roundTripDims gives each named dynamic dimension of the real models a size.
var roundTripDims = map[string]int64{
	"batch": 2, "batch_size": 2, "sequence": 5, "sequence_length": 3,
	"past_sequence_length": 0, "total_sequence_length": 3, "seq_len": 3, "dim": 2,
}

// roundTripFeeds builds deterministic inputs that fit a session's inputs.
func roundTripFeeds(t *testing.T, s *rt.Session) map[string]*rt.Tensor {
	t.Helper()
	feeds := map[string]*rt.Tensor{}
	for _, in := range s.Inputs() {
		shape := make([]int64, len(in.Shape))
		n := 1
		for i, d := range in.Shape {
			if d < 0 {
				size, ok := roundTripDims[in.DimParams[i]]
				if !ok {
					t.Fatalf("input %s: no size for dimension %q", in.Name, in.DimParams[i])
				}
				d = size
			}
			shape[i] = d
			n *= int(d)
		}
		var tensor *rt.Tensor
		var err error
		switch in.DType {
		case dtype.Int64:
			v := make([]int64, n)
			for i := range v {
				switch in.Name {
				case "attention_mask":
					v[i] = 1
				case "position_ids":
					v[i] = roundTripDims["past_sequence_length"] + int64(i)%shape[len(shape)-1]
				default:
					v[i] = int64(i*7+3) % 29
				}
			}
			tensor, err = rt.NewInt64(shape, v)
		case dtype.Float32, dtype.Float16:
			v := make([]float32, n)
			for i := range v {
				v[i] = float32(math.Sin(float64(i)*1.7 + 0.3))
			}
			if in.DType == dtype.Float16 {
				tensor, err = rt.NewFloat16FromFloat32(shape, v)
			} else {
				tensor, err = rt.NewFloat32(shape, v)
			}
		default:
			t.Fatalf("input %s: no feed for %s", in.Name, in.DType)
		}
		if err != nil {
			t.Fatal(err)
		}
		feeds[in.Name] = tensor
	}
	return feeds
}

func runAll(t *testing.T, s *rt.Session, feeds map[string]*rt.Tensor) map[string]*rt.Tensor {
	t.Helper()
	out, err := s.Run(feeds, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRoundTripRunsIdentically loads each real model, saves it (with
// external data for the LLaMA, inline for the rest), loads it back, and
// runs both copies in ONNX Runtime: every output must be bit-identical.
func TestRoundTripRunsIdentically(t *testing.T) {
	for _, name := range realModels {
		t.Run(name, func(t *testing.T) {
			src := sharedModel(t, name)
			m, err := graph.Load(src)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			out := filepath.Join(t.TempDir(), "model.onnx")
			external := m.Graph().Initializer[0].DataLocation != 0
			if err := m.Save(out, graph.SaveOptions{ExternalData: external}); err != nil {
				t.Fatal(err)
			}
			before, err := rt.NewSession(src)
			if err != nil {
				t.Fatal(err)
			}
			defer before.Close()
			after, err := rt.NewSession(out)
			if err != nil {
				t.Fatal(err)
			}
			defer after.Close()
			feeds := roundTripFeeds(t, before)
			want := runAll(t, before, feeds)
			got := runAll(t, after, feeds)
			if len(got) != len(want) {
				t.Fatalf("outputs: got %d want %d", len(got), len(want))
			}
			for name, w := range want {
				if g := got[name]; g == nil || g.String() != w.String() || !sameBits(g, w) {
					t.Errorf("output %s differs after the round trip", name)
				}
			}
		})
	}
}

func sameBits(a, b *rt.Tensor) bool {
	return fmt.Sprint(a.Shape()) == fmt.Sprint(b.Shape()) && fmt.Sprint(a.Data()) == fmt.Sprint(b.Data())
}
