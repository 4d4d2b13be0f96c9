package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// wordPiece is BERT's WordPiece model: a word is split greedily into the
// longest tokens of the vocabulary from its start, pieces after the first
// written with the continuing prefix (##); a word that cannot be split, or
// is longer than maxChars characters, is the unknown token.
type wordPiece struct {
	vocab    map[string]uint32
	unk      string
	prefix   string
	maxChars int
}

// wordPieceJSON is the WordPiece model of tokenizer.json.
type wordPieceJSON struct {
	Vocab                   map[string]uint32 `json:"vocab"`
	UnkToken                *string           `json:"unk_token"`
	ContinuingSubwordPrefix *string           `json:"continuing_subword_prefix"`
	MaxInputCharsPerWord    *int              `json:"max_input_chars_per_word"`
}

// parseWordPiece reads the WordPiece model at key.
func parseWordPiece(raw json.RawMessage, key string) (*wordPiece, error) {
	var j wordPieceJSON
	if err := decodeJSON(raw, key, &j); err != nil {
		return nil, err
	}
	if j.Vocab == nil {
		return nil, fmt.Errorf("%s: a WordPiece model needs \"vocab\"", key)
	}
	m := &wordPiece{vocab: j.Vocab, unk: "[UNK]", prefix: "##", maxChars: 100}
	if j.UnkToken != nil {
		m.unk = *j.UnkToken
	}
	if j.ContinuingSubwordPrefix != nil {
		m.prefix = *j.ContinuingSubwordPrefix
	}
	if j.MaxInputCharsPerWord != nil {
		if *j.MaxInputCharsPerWord < 0 {
			return nil, fmt.Errorf("%s.max_input_chars_per_word: %d is negative", key, *j.MaxInputCharsPerWord)
		}
		m.maxChars = *j.MaxInputCharsPerWord
	}
	return m, nil
}

func (m *wordPiece) tokenize(w string, ids []int64) ([]int64, error) {
	if utf8.RuneCountInString(w) > m.maxChars {
		return m.unknown(ids)
	}
	n := len(ids)
	var candidate strings.Builder
	for start := 0; start < len(w); {
		end, found := len(w), false
		for start < end {
			candidate.Reset()
			if start > 0 {
				candidate.WriteString(m.prefix)
			}
			candidate.WriteString(w[start:end])
			if id, ok := m.vocab[candidate.String()]; ok {
				ids = append(ids, int64(id))
				found = true
				break
			}
			_, size := utf8.DecodeLastRuneInString(w[start:end])
			end -= size
		}
		if !found {
			return m.unknown(ids[:n])
		}
		start = end
	}
	return ids, nil
}

// unknown appends the unknown token.
func (m *wordPiece) unknown(ids []int64) ([]int64, error) {
	id, ok := m.vocab[m.unk]
	if !ok {
		return nil, fmt.Errorf("unk_token %s is not in the vocabulary", quote(m.unk))
	}
	return append(ids, int64(id)), nil
}

func (m *wordPiece) tokens() map[string]uint32 { return m.vocab }

// wordPieceDecoder is the WordPiece decoder: pieces with the prefix join
// the token before, others follow a space; cleanup removes spaces before
// punctuation and in English contractions, as BERT's decoding does.
type wordPieceDecoder struct {
	prefix  string
	cleanup bool
}

func (d *wordPieceDecoder) decodeChain(tokens []string) []string {
	for i, t := range tokens {
		if i > 0 {
			if rest, ok := strings.CutPrefix(t, d.prefix); ok {
				t = rest
			} else {
				t = " " + t
			}
		}
		if d.cleanup {
			t = cleanupSpaces.Replace(t)
		}
		tokens[i] = t
	}
	return tokens
}

// cleanupSpaces are the WordPiece decoder's clean-up replacements.
var cleanupSpaces = sequentialReplacer{
	" .", ".", " ?", "?", " !", "!", " ,", ",", " ' ", "'", " n't", "n't", " 'm", "'m",
	" do not", " don't", " 's", "'s", " 've", "'ve", " 're", "'re",
}

// sequentialReplacer replaces old/new pairs one after the other, each
// over the result of the one before (unlike strings.Replacer, which
// replaces in one pass).
type sequentialReplacer []string

func (r sequentialReplacer) Replace(s string) string {
	for i := 0; i+1 < len(r); i += 2 {
		s = strings.ReplaceAll(s, r[i], r[i+1])
	}
	return s
}
