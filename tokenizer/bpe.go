package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// bpe is the BPE model: a vocabulary and merge rules.
type bpe struct {
	vocab  map[string]uint32
	merges map[uint64]mergeRule

	unk          string // the unknown token, "" when there is none
	prefix       string // continuing_subword_prefix, before every character but the first
	suffix       string // end_of_word_suffix, after the last character
	fuseUnk      bool   // consecutive unknown characters make one unknown token
	byteFallback bool   // an unknown character becomes its bytes' <0xXX> tokens
	ignoreMerges bool   // a word in the vocabulary is its token, unmerged
	byteIDs      [256]int64
}

// bpeJSON is the BPE model of tokenizer.json.
type bpeJSON struct {
	Type                    string            `json:"type"`
	Vocab                   map[string]uint32 `json:"vocab"`
	Merges                  []json.RawMessage `json:"merges"`
	Dropout                 *float64          `json:"dropout"`
	UnkToken                *string           `json:"unk_token"`
	ContinuingSubwordPrefix *string           `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string           `json:"end_of_word_suffix"`
	FuseUnk                 bool              `json:"fuse_unk"`
	ByteFallback            bool              `json:"byte_fallback"`
	IgnoreMerges            bool              `json:"ignore_merges"`
}

// parseBPE reads the BPE model at key.
func parseBPE(raw json.RawMessage, key string) (*bpe, error) {
	var j bpeJSON
	if err := decodeJSON(raw, key, &j); err != nil {
		return nil, err
	}
	if j.Vocab == nil || j.Merges == nil {
		return nil, fmt.Errorf("%s: a BPE model needs \"vocab\" and \"merges\"", key)
	}
	// Dropout randomly skips merges while training; encoding is done as
	// with none, as for inference.
	if d := j.Dropout; d != nil && !(0 <= *d && *d <= 1) {
		return nil, fmt.Errorf("%s.dropout: %v is not in [0, 1]", key, *d)
	}
	m := &bpe{
		vocab: j.Vocab, fuseUnk: j.FuseUnk, byteFallback: j.ByteFallback, ignoreMerges: j.IgnoreMerges,
		merges: make(map[uint64]mergeRule, len(j.Merges)),
	}
	if j.UnkToken != nil {
		m.unk = *j.UnkToken
	}
	if j.ContinuingSubwordPrefix != nil {
		m.prefix = *j.ContinuingSubwordPrefix
	}
	if j.EndOfWordSuffix != nil {
		m.suffix = *j.EndOfWordSuffix
	}
	for b := range m.byteIDs {
		m.byteIDs[b] = -1
		if id, ok := m.vocab[byteToken(byte(b))]; ok {
			m.byteIDs[b] = int64(id)
		}
	}
	for i, r := range j.Merges {
		a, b, err := parseMerge(r)
		if err != nil {
			return nil, fmt.Errorf("%s.merges[%d]: %w", key, i, err)
		}
		ida, ok := m.vocab[a]
		if !ok {
			return nil, fmt.Errorf("%s.merges[%d]: token %s is not in the vocabulary", key, i, quote(a))
		}
		idb, ok := m.vocab[b]
		if !ok {
			return nil, fmt.Errorf("%s.merges[%d]: token %s is not in the vocabulary", key, i, quote(b))
		}
		if len(b) < len(m.prefix) {
			return nil, fmt.Errorf("%s.merges[%d]: %s is shorter than continuing_subword_prefix", key, i, quote(b))
		}
		merged := a + b[len(m.prefix):]
		id, ok := m.vocab[merged]
		if !ok {
			return nil, fmt.Errorf("%s.merges[%d]: merged token %s is not in the vocabulary", key, i, quote(merged))
		}
		m.merges[pairKey(ida, idb)] = mergeRule{rank: uint32(i), id: id}
	}
	return m, nil
}

// parseMerge reads a merge rule: "a b", or ["a", "b"].
func parseMerge(raw json.RawMessage) (a, b string, err error) {
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", "", errors.New(`want "a b" or ["a", "b"]`)
		}
		parts := strings.Split(s, " ")
		if len(parts) != 2 {
			return "", "", fmt.Errorf("%s is not two tokens with a space between", quote(s))
		}
		return parts[0], parts[1], nil
	}
	var pair []string
	if err := json.Unmarshal(raw, &pair); err != nil || len(pair) != 2 {
		return "", "", errors.New(`want "a b" or ["a", "b"]`)
	}
	return pair[0], pair[1], nil
}

// byteToken is the name of a byte's token for byte fallback, as <0x0A>.
func byteToken(b byte) string { return fmt.Sprintf("<0x%02X>", b) }

// tokenize appends the token ids of w to ids.
func (m *bpe) tokenize(w string, ids []int64) ([]int64, error) {
	if w == "" {
		return ids, nil
	}
	if m.ignoreMerges {
		if id, ok := m.vocab[w]; ok {
			return append(ids, int64(id)), nil
		}
	}
	start, err := m.characters(w)
	if err != nil {
		return nil, err
	}
	syms := newSymbols(start)
	mergeAll(syms, m.merges)
	for i := int32(0); i >= 0 && int(i) < len(syms); i = syms[i].next {
		ids = append(ids, int64(syms[i].id))
	}
	return ids, nil
}

// characters returns the ids that BPE starts w from: a token for each
// character (with the prefix and suffix the model adds), its bytes' tokens
// where it has none and byte fallback is on, else the unknown token (one
// for a run of them, when fused), else nothing.
func (m *bpe) characters(w string) ([]uint32, error) {
	ids := make([]uint32, 0, len(w))
	unkPending := false
	unkID := uint32(0)
	for i, r := range w {
		end := i + utf8.RuneLen(r)
		s := w[i:end]
		if i > 0 && m.prefix != "" {
			s = m.prefix + s
		}
		if end == len(w) && m.suffix != "" {
			s += m.suffix
		}
		if id, ok := m.vocab[s]; ok {
			if unkPending {
				ids = append(ids, unkID)
				unkPending = false
			}
			ids = append(ids, id)
			continue
		}
		if m.byteFallback && m.hasByteTokens(s) {
			for k := 0; k < len(s); k++ {
				ids = append(ids, uint32(m.byteIDs[s[k]]))
			}
			continue
		}
		if m.unk == "" {
			continue
		}
		id, ok := m.vocab[m.unk]
		if !ok {
			return nil, fmt.Errorf("unk_token %s is not in the vocabulary", quote(m.unk))
		}
		if unkPending && !m.fuseUnk {
			ids = append(ids, unkID)
		}
		unkPending, unkID = true, id
	}
	if unkPending {
		ids = append(ids, unkID)
	}
	return ids, nil
}

// hasByteTokens reports whether every byte of s has a <0xXX> token.
func (m *bpe) hasByteTokens(s string) bool {
	for k := 0; k < len(s); k++ {
		if m.byteIDs[s[k]] < 0 {
			return false
		}
	}
	return true
}

func (m *bpe) tokens() map[string]uint32 { return m.vocab }
