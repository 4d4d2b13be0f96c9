package autodiff

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// The registry's self-check: what each entry promises about itself.

func TestRegistryEntries(t *testing.T) {
	if len(registry) < 60 {
		t.Fatalf("registry has %d entries, want the ops of every family file", len(registry))
	}
	for k, e := range registry {
		switch {
		case (e.grad != nil || e.decompose != nil) && e.infer == nil && e.declaredTypes == "":
			t.Errorf("%s: has a rule or a decomposition but no inference, and no reason why the declared types are enough", k)
		case e.infer != nil && e.declaredTypes != "":
			t.Errorf("%s: has inference and says its declared types are taken instead (%q)", k, e.declaredTypes)
		case e.grad != nil && e.decompose != nil:
			t.Errorf("%s: has a rule and a decomposition; the decomposition would never run", k)
		case e.grad == nil && e.diff != nil:
			t.Errorf("%s: lists differentiable slots %v without a rule", k, e.diff)
		case e.product != nil && (e.grad == nil || k.domain != ""):
			t.Errorf("%s: a product for recomputation must be a default-domain op with a rule", k)
		case e.recompute && k.domain != "":
			t.Errorf("%s: marked recomputable outside the default domain, where recomputation never looks", k)
		case e.recompute && e.infer == nil:
			t.Errorf("%s: marked recomputable without inference", k)
		}
		if !slices.IsSorted(e.diff) || len(slices.Compact(slices.Clone(e.diff))) != len(e.diff) {
			t.Errorf("%s: differentiable slots %v are not sorted and distinct", k, e.diff)
		}
	}
}

// TestRecomputableAreElementwise runs the inference of each op marked
// recomputable on inputs [B, 3] and [3]: an element-wise op (of one or
// two inputs) gives one output of shape [B, 3].
func TestRecomputableAreElementwise(t *testing.T) {
	var ops []string
	for k, e := range registry {
		if !e.recompute || e.infer == nil {
			continue
		}
		ops = append(ops, k.op)
		f := newInferer(graph.New(&onnxpb.ModelProto{Graph: &onnxpb.GraphProto{}}, ""))
		f.record("a", tinfo{elem: dtype.Float32, shape: rankShape(dim{sym: "$B"}, known(3))})
		f.record("b", tinfo{elem: dtype.Float32, shape: rankShape(known(3))})
		n := &onnxpb.NodeProto{OpType: k.op, Input: []string{"a", "b"}, Output: []string{"y"},
			Attribute: []*onnxpb.AttributeProto{graph.AttrInt("to", int64(dtype.Float32))}}
		outs := e.infer(f, n)
		if len(outs) != 1 || outs[0] == nil {
			t.Errorf("%s: inference gives %d outputs, want 1", k, len(outs))
			continue
		}
		if got := outs[0].shape; !sameShape(got, f.get("a").shape) {
			t.Errorf("%s: output shape %v, want the element-wise [$B 3]", k, got)
		}
		if outs[0].elem != dtype.Float32 {
			t.Errorf("%s: output type %s, want float32", k, outs[0].elem)
		}
	}
	sort.Strings(ops)
	for _, want := range []string{"Add", "Cast", "Mul", "Sigmoid"} {
		if !slices.Contains(ops, want) {
			t.Errorf("recomputable ops %v lack %s", ops, want)
		}
	}
}

func TestRegistryKeys(t *testing.T) {
	for k := range registry {
		if k.domain == "ai.onnx" {
			t.Errorf("%s: registered under ai.onnx instead of the empty default domain", k)
		}
	}
	if key("ai.onnx", "MatMul") != key("", "MatMul") {
		t.Errorf(`key("ai.onnx", "MatMul") = %v, want %v`, key("ai.onnx", "MatMul"), key("", "MatMul"))
	}
	spelled := &onnxpb.NodeProto{Domain: "ai.onnx", OpType: "MatMul"}
	plain := &onnxpb.NodeProto{OpType: "MatMul"}
	if lookup(spelled) == nil || lookup(spelled) != lookup(plain) {
		t.Errorf("a node in domain ai.onnx finds entry %p, the default domain %p", lookup(spelled), lookup(plain))
	}
	if r, ok := ruleFor(spelled); !ok || r != lookup(plain) {
		t.Errorf("ruleFor a MatMul in domain ai.onnx: %v, %v", r, ok)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Errorf("registering ai.onnx:MatMul beside :MatMul did not panic")
			}
		}()
		register("ai.onnx", "MatMul", entry{})
	}()
	if lookup(plain).grad == nil {
		t.Errorf("the failed registration replaced MatMul's entry")
	}
}

// TestSupportedIsRegistry: Supported lists each op with a rule or a
// decomposition once, and nothing else.
func TestSupportedIsRegistry(t *testing.T) {
	ops := Supported()
	if !slices.IsSorted(ops) {
		t.Errorf("Supported() is not sorted: %v", ops)
	}
	listed := map[string]bool{}
	for _, o := range ops {
		if listed[o] {
			t.Errorf("Supported() lists %s twice", o)
		}
		listed[o] = true
		domain, op, ok := strings.Cut(o, ":")
		e := registry[opKey{domain, op}]
		if !ok || e == nil || (e.grad == nil && e.decompose == nil) {
			t.Errorf("Supported() lists %s, which has no rule or decomposition in the registry", o)
		}
	}
	for k, e := range registry {
		if (e.grad != nil || e.decompose != nil) != listed[k.String()] {
			t.Errorf("%s: differentiable %v, listed by Supported() %v", k, e.grad != nil || e.decompose != nil, listed[k.String()])
		}
	}
}

// TestInfererTablesWrittenByInfererOnly: outside infer.go, no file of the
// package touches the inferer's table directly; they go through node,
// record and setShape.
func TestInfererTablesWrittenByInfererOnly(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if name == "infer.go" || strings.HasSuffix(name, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(nd ast.Node) bool {
			if sel, ok := nd.(*ast.SelectorExpr); ok && (sel.Sel.Name == "info" || sel.Sel.Name == "declared") {
				t.Errorf("%s: reads or writes the inferer's %s table", fset.Position(sel.Pos()), sel.Sel.Name)
			}
			return true
		})
	}
}
