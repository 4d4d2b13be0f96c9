package rewrite

import (
	"encoding/json"

	"github.com/peftonnx/peftonnx/graph"
)

// The LoRA, prefix and DoRA records are JSON objects in the model's
// metadata, one entry each; these two functions are how rewrite reads and
// writes them.

// readMetadataJSON decodes m's metadata entry key into v and reports
// whether m has that entry; an entry that is not valid JSON for v is an
// error that names the model and the key.
func readMetadataJSON(m *graph.Model, key string, v any) (bool, error) {
	value, ok := m.Metadata(key)
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal([]byte(value), v); err != nil {
		return true, errorf("%s: model metadata %q: %w", modelLabel(m), key, err)
	}
	return true, nil
}

// writeMetadataJSON stores v, encoded as JSON, as m's metadata entry key,
// in place of an earlier one.
func writeMetadataJSON(m *graph.Model, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return errorf("encode model metadata %q: %w", key, err)
	}
	m.SetMetadata(key, string(b))
	return nil
}
