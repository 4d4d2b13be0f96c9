package rewrite

import (
	"testing"

	"github.com/peftonnx/peftonnx/models"
)

// FuzzRecord gives an adapted model an arbitrary peftonnx.lora record
// (issue 16, C2 and E8: a tampered record made Merge panic or delete base
// nodes). Every function that reads the record must return an error or a
// result, never panic, and a Merge that succeeds must leave a model whose
// nodes read only values that are defined.
func FuzzRecord(f *testing.F) {
	base, err := models.Llama(models.LlamaTiny())
	if err != nil {
		f.Fatal(err)
	}
	if _, _, err := InjectLoRA(base, config(2, 4, ".*(q|v)_proj")); err != nil {
		f.Fatal(err)
	}
	var good string
	for _, p := range base.Proto.MetadataProps {
		if p.Key == MetadataKey {
			good = p.Value
		}
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(`{"version":1,"sites":[{"module":"m","in":72,"out":64,"r":4,"a":"x","b":"y"}]}`)
	f.Add(`{"version":99,"sites":[]}`)
	f.Add(`{"version":1,"sites":[{"enable":[true,false],"head_dim":0,"r":1,"in":1,"out":2}]}`)
	f.Fuzz(func(t *testing.T, rec string) {
		m := base.Clone()
		for _, p := range m.Proto.MetadataProps {
			if p.Key == MetadataKey {
				p.Value = rec
			}
		}
		_, _ = Sites(m)
		_, _ = Summarize(m)
		_, _ = AdapterConfig(m)
		_, _ = Extract(m)
		_, _ = ExtractAdapter(m)
		if ad, err := ExtractAdapter(base); err == nil {
			_, _ = Feeds(m, ad)
		}
		if Merge(m) != nil {
			return
		}
		defined := map[string]bool{"": true}
		for _, in := range m.Graph().Input {
			defined[in.Name] = true
		}
		for _, init := range m.Graph().Initializer {
			defined[init.Name] = true
		}
		for _, n := range m.Graph().Node {
			for _, o := range n.Output {
				defined[o] = true
			}
		}
		for _, n := range m.Graph().Node {
			for _, in := range n.Input {
				if !defined[in] {
					t.Fatalf("after Merge, node %q reads %q, which nothing defines", n.Name, in)
				}
			}
		}
	})
}
