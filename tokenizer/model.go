package tokenizer

import (
	"encoding/json"
	"fmt"
)

// model turns a word into token ids.
type model interface {
	// tokenize appends the ids of w's tokens to ids.
	tokenize(w string, ids []int64) ([]int64, error)
	// tokens returns the model's vocabulary: tokens and their ids.
	tokens() map[string]uint32
}

// modelHead is what parseModel reads to choose the model of a file that
// predates "type": the fields that tell the models apart.
type modelHead struct {
	Merges               json.RawMessage `json:"merges"`
	MaxInputCharsPerWord json.RawMessage `json:"max_input_chars_per_word"`
	Vocab                json.RawMessage `json:"vocab"`
}

// parseModel reads the model at key.
func parseModel(raw json.RawMessage, key string) (model, error) {
	if isAbsent(raw) {
		return nil, fmt.Errorf("no %q", key)
	}
	var typed struct {
		Type string `json:"type"`
	}
	if err := decodeJSON(raw, key, &typed); err != nil {
		return nil, err
	}
	typ := typed.Type
	if typ == "" {
		var head modelHead
		if err := decodeJSON(raw, key, &head); err != nil {
			return nil, err
		}
		switch {
		case head.Merges != nil:
			typ = "BPE"
		case head.MaxInputCharsPerWord != nil:
			typ = "WordPiece"
		case len(head.Vocab) > 0 && head.Vocab[0] == '{':
			typ = "WordLevel"
		default:
			return nil, fmt.Errorf("%s: no \"type\"", key)
		}
	}
	switch typ {
	case "BPE":
		return parseBPE(raw, key)
	case "WordPiece":
		return parseWordPiece(raw, key)
	case "WordLevel":
		return parseWordLevel(raw, key)
	}
	return nil, unsupported("model", key, typ)
}
