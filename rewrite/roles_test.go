package rewrite

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
)

// anonymize renames every node OpType_i and every initializer a number,
// as exports that keep no names have them.
func anonymize(m *graph.Model) {
	g := m.Graph()
	rename := map[string]string{}
	for i, t := range g.Initializer {
		rename[t.Name] = fmt.Sprint(1000 + i)
		t.Name = rename[t.Name]
	}
	for i, n := range g.Node {
		n.Name = fmt.Sprintf("%s_%d", n.OpType, i)
		for j, in := range n.Input {
			if r, ok := rename[in]; ok {
				n.Input[j] = r
			}
		}
	}
	m.Reindex()
}

// roleFromName is the role that the Optimum builders' module names give,
// the truth that the structure must find without them.
func roleFromName(module string) Role {
	last := module[strings.LastIndexByte(module, '.')+1:]
	switch {
	case last == "c_attn":
		return RoleQKV
	case strings.HasSuffix(module, "attn.c_proj"):
		return RoleOutput
	case last == "c_fc":
		return RoleUp
	case strings.HasSuffix(module, "mlp.c_proj"):
		return RoleDown
	case last == "q_proj" || last == "query":
		return RoleQuery
	case last == "k_proj" || last == "key":
		return RoleKey
	case last == "v_proj" || last == "value":
		return RoleValue
	case last == "o_proj" || strings.HasSuffix(module, "attention.output.dense"):
		return RoleOutput
	case last == "gate_proj":
		return RoleGate
	case last == "up_proj" || strings.HasSuffix(module, "intermediate.dense"):
		return RoleUp
	case last == "down_proj" || strings.HasSuffix(module, ".output.dense"):
		return RoleDown
	}
	return ""
}

// TestRolesFromStructure checks that a model stripped of every name gets
// the roles its names gave (LLaMA's SwiGLU, BERT's GELU MLP), module names
// from them, and that every layer of the named model has the same role.
func TestRolesFromStructure(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func() (*graph.Model, error)
		roles int
	}{
		{"llama", func() (*graph.Model, error) { return models.Llama(models.LlamaTiny()) }, 14},
		{"bert", func() (*graph.Model, error) { return models.BERT(models.BERTTiny()) }, 12},
		{"llama-modelbuilder", func() (*graph.Model, error) {
			c := models.LlamaTiny()
			c.Producer, c.Hidden = models.ModelBuilder, 64
			return models.Llama(c)
		}, 14},
		{"tiny-llama-genai", nil, 14},
		{"gpt2", gpt2Variant(false, false), 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.build == nil {
				tc.build = func() (*graph.Model, error) { return realModel(t, "tiny-llama-genai-fp16/model.onnx"), nil }
			}
			named, err := tc.build()
			if err != nil {
				t.Fatal(err)
			}
			want, err := FindLinears(named)
			if err != nil {
				t.Fatal(err)
			}
			anon, _ := tc.build()
			anonymize(anon)
			got, err := FindLinears(anon)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("got %d layers, want %d", len(got), len(want))
			}
			n := 0
			for i := range want {
				truth := roleFromName(want[i].Module)
				if want[i].Role != truth || got[i].Role != truth {
					t.Errorf("%s: role %q named, %q anonymous, want %q", want[i].Module, want[i].Role, got[i].Role, truth)
				}
				if truth == "" {
					continue
				}
				n++
				if got[i].NameFrom != "structure" || got[i].Module != structureName(want[i].Block, truth) {
					t.Errorf("%s: anonymous module %q from %s, want %q", want[i].Module, got[i].Module, got[i].NameFrom, structureName(want[i].Block, truth))
				}
			}
			if n != tc.roles {
				t.Errorf("%d layers have roles, want %d", n, tc.roles)
			}
		})
	}
}

// TestTFNamesEndToEnd renames a BERT's linear layers as tf2onnx names a
// Hugging Face TF export (node paths with layer_._N and Tensordot, or
// anonymous nodes with kernel paths), and checks that every layer gets the
// PyTorch module name under the Keras model's scope.
func TestTFNamesEndToEnd(t *testing.T) {
	named, err := models.BERT(models.BERTTiny())
	if err != nil {
		t.Fatal(err)
	}
	want, err := FindLinears(named)
	if err != nil {
		t.Fatal(err)
	}
	tfPath := func(module string) string {
		segs := strings.Split(module, ".")
		var out []string
		for i := 0; i < len(segs); i++ {
			if segs[i] == "layer" && i+1 < len(segs) {
				out = append(out, "layer_._"+segs[i+1])
				i++
				continue
			}
			out = append(out, segs[i])
		}
		return "tf_bert_model/" + strings.Join(out, "/")
	}
	for _, variant := range []string{"node paths", "kernel paths"} {
		m, _ := models.BERT(models.BERTTiny())
		ls, _ := FindLinears(m)
		anonymize(m)
		for i, l := range ls {
			n := m.Graph().Node[slices.Index(m.Graph().Node, l.Node)]
			if variant == "node paths" {
				n.Name = tfPath(want[i].Module) + "/Tensordot/MatMul"
				continue
			}
			w := n.Input[1]
			for _, init := range m.Graph().Initializer {
				if init.Name == w {
					init.Name = tfPath(want[i].Module) + "/kernel:0"
				}
			}
			n.Input[1] = tfPath(want[i].Module) + "/kernel:0"
		}
		m.Reindex()
		got, err := FindLinears(m)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if w := "tf_bert_model." + want[i].Module; got[i].Module != w {
				t.Errorf("%s: got module %q, want %q", variant, got[i].Module, w)
			}
		}
	}
}
