package tokenizer

import (
	"encoding/json"
	"fmt"
)

// wordLevel is the WordLevel model: a word is its token, or the unknown
// token.
type wordLevel struct {
	vocab map[string]uint32
	unk   string
}

// wordLevelJSON is the WordLevel model of tokenizer.json.
type wordLevelJSON struct {
	Vocab    map[string]uint32 `json:"vocab"`
	UnkToken string            `json:"unk_token"`
}

// parseWordLevel reads the WordLevel model at key.
func parseWordLevel(raw json.RawMessage, key string) (*wordLevel, error) {
	var j wordLevelJSON
	if err := decodeJSON(raw, key, &j); err != nil {
		return nil, err
	}
	if j.Vocab == nil {
		return nil, fmt.Errorf("%s: a WordLevel model needs \"vocab\"", key)
	}
	return &wordLevel{vocab: j.Vocab, unk: j.UnkToken}, nil
}

func (m *wordLevel) tokenize(w string, ids []int64) ([]int64, error) {
	if id, ok := m.vocab[w]; ok {
		return append(ids, int64(id)), nil
	}
	id, ok := m.vocab[m.unk]
	if !ok {
		return nil, fmt.Errorf("word %s is not in the vocabulary, nor is unk_token %s", quote(w), quote(m.unk))
	}
	return append(ids, int64(id)), nil
}

func (m *wordLevel) tokens() map[string]uint32 { return m.vocab }
