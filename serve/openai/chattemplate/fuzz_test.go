package chattemplate

import "testing"

// FuzzRender parses and renders arbitrary templates: errors are fine,
// panics are not.
func FuzzRender(f *testing.F) {
	for _, s := range []string{chatML, llama3, reasoning, "{{ x[1:-1:2] | tojson(indent=2) }}", "{% for a, b in d.items() %}{{ loop.cycle(1, 2) }}{% endfor %}", "{{ 'a' * 3 ~ 1 // 0 }}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		tmpl, err := Parse(src)
		if err != nil {
			return
		}
		tmpl.Render(map[string]any{"messages": msgs("user", "a", "assistant", "b"), "x": []any{1, "s", 2.5}, "d": map[string]any{"k": 1}, "add_generation_prompt": true})
	})
}
