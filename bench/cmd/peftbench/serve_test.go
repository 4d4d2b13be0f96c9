package main

import (
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
)

func TestRandomLoRA(t *testing.T) {
	m, err := models.Llama(models.LlamaTiny())
	if err != nil {
		t.Fatal(err)
	}
	linears, err := rewrite.FindLinears(m)
	if err != nil {
		t.Fatal(err)
	}
	ad := randomLoRA(linears, 8, []string{"k_proj", "down_proj"}, 1)
	if got := len(ad.Weights); got != 4 { // 2 layers
		t.Fatalf("%d modules, want 4: %v", got, ad.Modules())
	}
	for mod, w := range ad.Weights {
		if !strings.HasSuffix(mod, ".k_proj") && !strings.HasSuffix(mod, ".down_proj") {
			t.Errorf("module %q is not a target", mod)
		}
		if w.A.Shape[1] != 8 || w.B.Shape[0] != 8 {
			t.Errorf("%s: lora_A %v, lora_B %v, want rank 8", mod, w.A.Shape, w.B.Shape)
		}
		zero := true
		for _, v := range w.B.Data {
			zero = zero && v == 0
		}
		if zero {
			t.Errorf("%s: B is zero, so the adapter would change nothing", mod)
		}
	}
}

func TestServeTable(t *testing.T) {
	r := &ServeResult{Size: "base", Params: 181e6, NewTokens: 16, Requests: 4, Threads: 2,
		Rows:       []ServeRow{{Name: "8 adapters, 8 clients", Clients: 8, Adapters: 8, TokensPerS: 133.4, MSPerToken: 60}},
		EightVsOne: 3.6, AdaptersVsBase: 0.99, UnmergedVsMerged: 0.97, LoadToFirstTokenMS: 39.7}
	got := serveTable(r)
	for _, want := range []string{"| 8 adapters, 8 clients | 8 | 8 | 133.4 | 60.0 |", "**3.60×** one client", "**0.99×** 8 clients on the base", "39.7 ms"} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}
