package chattemplate

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

// chatML is a ChatML template written as Qwen2's are laid out: one tag a
// line, with whitespace control, trim_blocks and lstrip_blocks at work.
const chatML = `{%- if messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
{%- else %}
    {{- '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
`

// reasoning exercises what reasoning-model templates do: walk the
// messages backwards for the last user turn, keep state in a namespace,
// split thinking out of an assistant's content with chained string
// methods, and look at neighbouring messages by index.
const reasoning = `{%- set ns = namespace(last_user=messages|length - 1, found=false) %}
{%- for m in messages[::-1] %}
    {%- set i = (messages|length - 1) - loop.index0 %}
    {%- if not ns.found and m.role == "user" and m.content is string and not(m.content.startswith('<r>') and m.content.endswith('</r>')) %}
        {%- set ns.found = true %}
        {%- set ns.last_user = i %}
    {%- endif %}
{%- endfor %}
{%- for m in messages %}
    {%- set content = m.content if m.content is string else '' %}
    {%- if m.role == "assistant" and '</think>' in content %}
        {%- set thought = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
        {%- set content = content.split('</think>')[-1].lstrip('\n') %}
        {%- if loop.index0 > ns.last_user %}
            {{- '[' + thought.strip('\n') + ']' }}
        {%- endif %}
    {%- endif %}
    {%- if loop.first or messages[loop.index0 - 1].role != m.role %}
        {{- '<' + m.role + '>' }}
    {%- endif %}
    {{- content }}
    {%- if loop.last or messages[loop.index0 + 1].role != m.role %}
        {{- '</' + m.role + '>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<assistant>' }}{%- endif %}`

// llama3 writes Llama 3's chat format: header tokens, trimmed content,
// the BOS before the first message.
const llama3 = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"

func msgs(pairs ...string) []any {
	var out []any
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, map[string]any{"role": pairs[i], "content": pairs[i+1]})
	}
	return out
}

func tinyLlamaTemplate(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../../../shared/models/tiny-llama-genai-fp16/tokenizer_config.json")
	if err != nil {
		t.Skipf("the shared models are not beside the project: %v", err)
	}
	var cfg struct {
		ChatTemplate string `json:"chat_template"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg.ChatTemplate
}

func TestRenderTemplates(t *testing.T) {
	tests := []struct {
		name, src string
		vars      map[string]any
		want      string
	}{
		{"chatml default system", chatML, map[string]any{"messages": msgs("user", "Hi"), "add_generation_prompt": true},
			"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"},
		{"chatml system and turns", chatML, map[string]any{"messages": msgs("system", "Be brief.", "user", "Hi", "assistant", "Yo", "user", "Q")},
			"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n"},
		{"llama3", llama3, map[string]any{"messages": msgs("user", "  Hi \n"), "bos_token": "<|begin_of_text|>", "add_generation_prompt": true},
			"<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
		{"reasoning", reasoning, map[string]any{"add_generation_prompt": true, "messages": msgs("user", "Hi", "assistant", "<think>\nold\n</think>\n\nYo", "user", "Q", "user", "<r>tool</r>", "assistant", "<think>new</think>A")},
			"<user>Hi</user>\n<assistant>Yo</assistant>\n<user>Q<r>tool</r></user>\n[new]<assistant>A</assistant>\n<assistant>"},
		{"trim_blocks and lstrip_blocks", "a\n  {% if true %}\nb\n  {% endif %}\nc", nil, "a\nb\nc"},
		{"plus keeps whitespace", "a\n  {%+ if true +%}\nb{% endif %}", nil, "a\n  \nb"},
		{"comment", "a {# note #}b", nil, "a b"},
		{"namespace and loop", "{% set ns = namespace(n=0) %}{% for x in [3, 4, 5] if x > 3 %}{% set ns.n = ns.n + x %}{{ loop.index }}/{{ loop.length }}{{ ',' if not loop.last }}{% endfor %}={{ ns.n }}", nil, "1/2,2/2=9"},
		{"scoping: set in a loop does not leak", "{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}", nil, "1"},
		{"slices and reverse", "{{ [1,2,3,4][1:] }} {{ [1,2,3][::-1] }} {{ 'abc'[-1] }} {{ 'hello'[1:3] }}", nil, "[2, 3, 4] [3, 2, 1] c el"},
		{"filters", "{{ '  x ' | trim }}|{{ [1,2] | length }}|{{ {'b': 1, 'a': 'é<'} | tojson }}|{{ [1,2,3] | join('-') }}|{{ undefinedvar | default('d') }}|{{ 'ab' | upper }}", nil,
			`x|2|{"b": 1, "a": "é<"}|1-2-3|d|AB`},
		{"tests", "{{ x is defined }} {{ y is not none }} {{ 'a' is string }} {{ 3 is odd }} {{ none is none }}", map[string]any{"x": 1, "y": nil}, "True False True True True"},
		{"string methods", "{{ ' a b '.strip().split(' ') }} {{ 'abc'.startswith('ab') }} {{ 'x,y'.replace(',', ';') }}", nil, "['a', 'b'] True x;y"},
		{"dict methods", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{{ d.get('z', 0) }}", map[string]any{"d": map[string]any{"a": 1, "b": 2.5}}, "a=1;b=2.5;0"},
		{"arithmetic and concat", "{{ 7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 3 }} {{ 1 / 2 }} {{ 1 ~ 'a' }}", nil, "3 1 2 8 0.5 1a"},
		{"conditional expression", "{{ 'y' if 1 in [1] else 'n' }}{{ 'n' if 'q' not in 'abc' else 'y' }}", nil, "yn"},
		{"for else, break", "{% for x in [] %}x{% else %}empty{% endfor %}{% for x in [1,2,3] %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}", nil, "empty1"},
		{"set block", "{% set s %}a{{ 1 }}{% endset %}{{ s ~ s }}", nil, "a1a1"},
		{"selectattr and map", "{{ ms | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(',') }}", map[string]any{"ms": msgs("user", "a", "assistant", "b", "user", "c")}, "a,c"},
	}
	for _, tc := range tests {
		tmpl, err := Parse(tc.src)
		if err != nil {
			t.Errorf("%s: Parse: %v", tc.name, err)
			continue
		}
		got, err := tmpl.Render(tc.vars)
		if err != nil {
			t.Errorf("%s: Render: %v", tc.name, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s: got %q want %q", tc.name, got, tc.want)
		}
	}
}

// TestTinyLlamaTemplate renders the real template of the shared model.
func TestTinyLlamaTemplate(t *testing.T) {
	tmpl, err := Parse(tinyLlamaTemplate(t))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]any{"bos_token": "<s>", "eos_token": "</s>", "add_generation_prompt": true,
		"messages": msgs("system", "S", "user", "Hi", "assistant", "Yo", "user", "Q")}
	got, err := tmpl.Render(vars)
	if err != nil {
		t.Fatal(err)
	}
	want := "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nHi [/INST] Yo </s><s>[INST] Q [/INST]"
	if got != want {
		t.Errorf("got %q want %q", got, want)
	}
	vars["messages"] = msgs("user", "a", "user", "b")
	_, err = tmpl.Render(vars)
	var te *TemplateError
	if !errors.As(err, &te) || !strings.Contains(te.Message, "alternate") {
		t.Errorf("two user turns: got %v, want the template's raise_exception", err)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ src, want string }{
		{"{% if x %}a", "line 1: {% if %} is not closed"},
		{"{{ x", `not closed with "}}"`},
		{"a\n{% macro m() %}{% endmacro %}", "line 2: unsupported tag {% macro %}"},
		{"{% for x in %}{% endfor %}", "want an expression"},
		{"{{ 'abc }}", "string literal is not closed"},
		{"{% endfor %}", "unexpected {% endfor %}"},
	}
	for _, tc := range tests {
		_, err := Parse(tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "chattemplate: ") {
			t.Errorf("Parse(%q): got %v, want an error with %q", tc.src, err, tc.want)
		}
	}
}

func TestRenderErrors(t *testing.T) {
	tests := []struct{ src, want string }{
		{"{{ 1 + 'a' }}", "line 1: unsupported operand types for +: integer and string"},
		{"{{ x | nosuch }}", `unknown filter "nosuch"`},
		{"\n{{ raise_exception('bad roles') }}", "chattemplate: bad roles"},
		{"{% set x.y = 1 %}", "not a namespace()"},
		{"{% for i in range(400) %}{% for j in range(400) %}{% endfor %}{% endfor %}", "loop iterations"},
		{"{% for i in range(100) %}{{ 'x' * 1000000 }}{% endfor %}", "the output is over"},
	}
	for _, tc := range tests {
		tmpl, err := Parse(tc.src)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.src, err)
			continue
		}
		_, err = tmpl.Render(nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Render(%q): got %v, want an error with %q", tc.src, err, tc.want)
		}
	}
}
