package pydict

import (
	"slices"
	"testing"
)

func TestDict(t *testing.T) {
	var d Dict
	if _, ok := d.Get("a"); ok || d.Len() != 0 || len(d.Keys()) != 0 {
		t.Fatalf("the zero Dict is not empty: %v", d.Keys())
	}
	d.Set("b", 1)
	d.Set("a", 2)
	d.Set("b", 3) // an existing key keeps its place
	if got, want := d.Keys(), []string{"b", "a"}; !slices.Equal(got, want) {
		t.Errorf("Keys() = %v, want %v", got, want)
	}
	if v, ok := d.Get("b"); !ok || v != 3 {
		t.Errorf("Get(b) = %v, %v; want 3, true", v, ok)
	}
	var keys []string
	var values []any
	for k, v := range d.All() {
		keys, values = append(keys, k), append(values, v)
	}
	if !slices.Equal(keys, []string{"b", "a"}) || !slices.Equal(values, []any{3, 2}) {
		t.Errorf("All() yields %v %v, want [b a] [3 2]", keys, values)
	}
	for k := range d.All() {
		if k != "b" {
			t.Errorf("All() went on after its loop stopped, at %q", k)
		}
		break
	}
	d.Keys()[0] = "changed"
	if d.Keys()[0] != "b" {
		t.Error("changing the slice Keys returned changed the dict")
	}
}
