// Package chattemplate renders HuggingFace chat templates: the Jinja
// templates that tokenizer_config.json carries as chat_template and that
// transformers' apply_chat_template renders. It implements the part of
// Jinja that those templates use, with the environment HF sets up:
//
//   - tags: {{ expr }}, {% if/elif/else %}, {% for x in xs [if cond] %}
//     with {% else %}, loop.index, index0, revindex, revindex0, first,
//     last, length, previtem, nextitem and loop.cycle, {% break %} and
//     {% continue %}, {% set x = expr %}, {% set ns.x = expr %},
//     {% set x %}...{% endset %}, {% generation %} (rendered as its body),
//     comments {# #}, whitespace control with - and +, and HF's
//     trim_blocks and lstrip_blocks;
//   - expressions: literals (strings, numbers, true/false/none in either
//     case, lists, dicts), attribute and item access, slices, calls, the
//     operators of Python's precedence (or, and, not, in, not in, ==, !=,
//     <, <=, >, >=, +, -, *, /, //, %, **, ~) and a if c else b;
//   - string methods (strip, lstrip, rstrip, split, startswith, endswith,
//     upper, lower, title, capitalize, replace, find, count, join) and the
//     dict methods get, items, keys and values;
//   - filters: trim, tojson (HF's: insertion order, no ASCII escaping),
//     length, count, upper, lower, title, capitalize, default, join,
//     first, last, list, string, int, float, abs, safe, replace, reverse,
//     items, map, select, reject, selectattr, rejectattr, indent, sort,
//     unique, min, max, sum;
//   - tests: defined, undefined, none, string, number, integer, float,
//     mapping, sequence, iterable, boolean, true, false, even, odd,
//     divisibleby, eq, ne, in;
//   - globals: raise_exception (the render fails with its message),
//     namespace, range, dict and strftime_now.
//
// Limits: no macros, call blocks, includes or inheritance (a template
// that uses them is refused at Parse, by tag name); no autoescaping, as
// HF has none; an undefined variable renders as "" and is falsy, and its
// attributes are undefined too (Jinja would raise on those); values are
// immutable, as in HF's sandbox. A render stops with an error past 100,000
// loop iterations or 16 MiB of output.
package chattemplate
