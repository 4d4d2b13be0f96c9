package rewrite

import (
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/models"
)

// TestNestedLayersSaidPlainly checks that layers inside If branches are
// found as nested, that a model with no other layer says they sit in a
// subgraph instead of only that it has no linear layer, and that the
// main-graph layer of a model with both is still adapted.
func TestNestedLayersSaidPlainly(t *testing.T) {
	m, err := models.IfLinear(false, 1)
	if err != nil {
		t.Fatal(err)
	}
	nested := FindNestedLayers(m)
	if len(nested) != 2 || nested[0].Node != "/select/a/MatMul" || nested[0].Attr != "then_branch" || nested[1].Node != "/select/b/MatMul" || nested[1].Owner != "/select/If" {
		t.Fatalf("nested layers: %+v", nested)
	}
	_, _, err = InjectLoRA(m, config(2, 4, ".*"))
	if err == nil {
		t.Fatal("injecting into a model whose only layers are nested succeeded")
	}
	for _, want := range []string{"inside the subgraphs", `"/select/a/MatMul" in then_branch of "/select/If"`, "does not adapt"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	m, err = models.IfLinear(true, 1)
	if err != nil {
		t.Fatal(err)
	}
	sites, _, err := InjectLoRA(m, config(2, 4, ".*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(sites) != 1 || sites[0].Module != "head" {
		t.Fatalf("sites: %+v, want head only", sites)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
}
