package tokenizer

import (
	"encoding/json"
	"fmt"
)

// maxNesting is how deep Sequence components may nest.
const maxNesting = 32

// isAbsent reports whether a component of tokenizer.json is missing or null.
func isAbsent(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// decodeComponent decodes the component at key, nested depth deep in
// Sequences, into v, whose "type" field is typ, and checks that it has a
// type.
func decodeComponent(raw json.RawMessage, key string, depth int, typ *string, v any) error {
	if depth > maxNesting {
		return fmt.Errorf("%s: nested more than %d deep", key, maxNesting)
	}
	if err := decodeJSON(raw, key, v); err != nil {
		return err
	}
	if *typ == "" {
		return fmt.Errorf("%s: no \"type\"", key)
	}
	return nil
}

// parseSequence parses items, the components of a Sequence at key whose
// list is field ("normalizers"), each with parse one level deeper, and
// leaves out those that parse to nothing; S is the sequence type.
func parseSequence[S ~[]T, T comparable](items []json.RawMessage, key, field string, depth int, parse func(json.RawMessage, string, int) (T, error)) (S, error) {
	seq := make(S, 0, len(items))
	var none T
	for i, r := range items {
		c, err := parse(r, fmt.Sprintf("%s.%s[%d]", key, field, i), depth+1)
		if err != nil {
			return nil, err
		}
		if c != none {
			seq = append(seq, c)
		}
	}
	return seq, nil
}

// runSequence passes x through the components of a Sequence in order,
// each working on what the one before returned, with apply (the kind's
// method, such as normalizer.normalize).
func runSequence[S ~[]C, C, T any](seq S, x T, apply func(C, T) T) T {
	for _, c := range seq {
		x = apply(c, x)
	}
	return x
}

// unsupported is the error for a component type that the package does not
// implement. kind is "normalizer", "pre-tokenizer", "model", "decoder" or
// "post-processor"; key is where in the file it is.
func unsupported(kind, key, typ string) error {
	if key == topKeys[kind] {
		return fmt.Errorf("unsupported %s type %s", kind, quote(typ))
	}
	return fmt.Errorf("%s: unsupported %s type %s", key, kind, quote(typ))
}

// topKeys are the keys of tokenizer.json that hold each kind of component.
var topKeys = map[string]string{
	"normalizer": "normalizer", "pre-tokenizer": "pre_tokenizer", "model": "model",
	"decoder": "decoder", "post-processor": "post_processor",
}
