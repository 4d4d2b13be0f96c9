package train

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sugarme/tokenizer"
	"github.com/sugarme/tokenizer/pretrained"
)

// Tokenizer encodes text to token ids and back with a HuggingFace
// tokenizer.json, through github.com/sugarme/tokenizer.
//
// It adds what that library lacks for SentencePiece-style BPE vocabularies
// such as Llama's: byte fallback (a character missing from the vocabulary
// becomes its UTF-8 bytes as <0xXX> tokens instead of <unk>), and the
// special token ids (BOS, EOS, padding), read from tokenizer_config.json
// beside tokenizer.json when it exists, else from the post-processor's
// template and the usual token names.
type Tokenizer struct {
	tk   *tokenizer.Tokenizer
	path string

	bos, eos, pad, unk int64 // -1 when the tokenizer has none
	unkToken           string
	byteIDs            []int64 // <0x00>..<0xFF>, when byte fallback is on
	special            map[int]bool
	vocabSize          int
}

// tokenizerJSON is the part of tokenizer.json that sugarme/tokenizer does
// not act on, or that we need to know ourselves.
type tokenizerJSON struct {
	Model struct {
		Type         string `json:"type"`
		UnkToken     string `json:"unk_token"`
		ByteFallback bool   `json:"byte_fallback"`
	} `json:"model"`
	PostProcessor *struct {
		Type   string `json:"type"`
		Single []struct {
			SpecialToken *struct {
				ID string `json:"id"`
			} `json:"SpecialToken"`
		} `json:"single"`
	} `json:"post_processor"`
}

// tokenizerConfig is the part of tokenizer_config.json we read. Special
// tokens there are a string or an object with "content".
type tokenizerConfig struct {
	BOS json.RawMessage `json:"bos_token"`
	EOS json.RawMessage `json:"eos_token"`
	Pad json.RawMessage `json:"pad_token"`
	Unk json.RawMessage `json:"unk_token"`
}

// tokenContent returns the token a tokenizer_config.json entry names.
func tokenContent(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var obj struct {
		Content string `json:"content"`
	}
	if json.Unmarshal(raw, &obj) == nil {
		return obj.Content
	}
	return ""
}

// LoadTokenizer reads a HuggingFace tokenizer.json, and the
// tokenizer_config.json beside it if there is one.
func LoadTokenizer(path string) (t *Tokenizer, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errorf("tokenizer %s: no such file", path)
		}
		return nil, errorf("tokenizer %s: %v", path, err)
	}
	var extra tokenizerJSON
	if err := json.Unmarshal(b, &extra); err != nil {
		return nil, errorf("tokenizer %s: not a tokenizer.json: %v", path, err)
	}
	defer func() {
		// sugarme/tokenizer panics on some malformed files.
		if r := recover(); r != nil {
			t, err = nil, errorf("tokenizer %s: %v", path, r)
		}
	}()
	tk, err := pretrained.FromReader(bytes.NewReader(b))
	if err != nil {
		return nil, errorf("tokenizer %s: %v", path, err)
	}
	t = &Tokenizer{tk: tk, path: path, bos: -1, eos: -1, pad: -1, unk: -1, vocabSize: tk.GetVocabSize(true), special: map[int]bool{}}
	for _, tok := range tk.GetSpecialTokens() {
		if id, ok := tk.TokenToId(tok); ok {
			t.special[id] = true
		}
	}

	var cfg tokenizerConfig
	if cb, err := os.ReadFile(filepath.Join(filepath.Dir(path), "tokenizer_config.json")); err == nil {
		if err := json.Unmarshal(cb, &cfg); err != nil {
			return nil, errorf("tokenizer %s: tokenizer_config.json: %v", path, err)
		}
	}
	t.bos = t.firstID(tokenContent(cfg.BOS))
	t.eos = t.firstID(tokenContent(cfg.EOS))
	t.pad = t.firstID(tokenContent(cfg.Pad))
	t.unkToken = tokenContent(cfg.Unk)
	if t.unkToken == "" {
		t.unkToken = extra.Model.UnkToken
	}
	t.unk = t.firstID(t.unkToken)
	if pp := extra.PostProcessor; pp != nil && pp.Type == "TemplateProcessing" && len(pp.Single) > 0 {
		if st := pp.Single[0].SpecialToken; st != nil && t.bos < 0 {
			t.bos = t.firstID(st.ID)
		}
		if st := pp.Single[len(pp.Single)-1].SpecialToken; st != nil && len(pp.Single) > 1 && t.eos < 0 {
			t.eos = t.firstID(st.ID)
		}
	}
	if t.bos < 0 {
		t.bos = t.firstID("<s>", "<|begin_of_text|>", "<bos>", "[CLS]")
	}
	if t.eos < 0 {
		t.eos = t.firstID("</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>", "[SEP]")
	}
	if extra.Model.ByteFallback {
		ids := make([]int64, 256)
		ok := true
		for i := range ids {
			id, found := tk.TokenToId(fmt.Sprintf("<0x%02X>", i))
			ok = ok && found
			ids[i] = int64(id)
		}
		if ok {
			t.byteIDs = ids
		}
	}
	return t, nil
}

// firstID returns the id of the first of tokens in the vocabulary, or -1.
func (t *Tokenizer) firstID(tokens ...string) int64 {
	for _, tok := range tokens {
		if tok == "" {
			continue
		}
		if id, ok := t.tk.TokenToId(tok); ok {
			return int64(id)
		}
	}
	return -1
}

// Path returns the file the tokenizer was loaded from.
func (t *Tokenizer) Path() string { return t.path }

// VocabSize returns the number of token ids, added tokens included.
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

// BOS returns the beginning-of-sequence token id, or -1.
func (t *Tokenizer) BOS() int64 { return t.bos }

// EOS returns the end-of-sequence token id, or -1.
func (t *Tokenizer) EOS() int64 { return t.eos }

// PadID returns the id to pad batches with: the configured pad token, else
// EOS, else 0. Padded positions are masked out of attention and loss, so
// the choice only has to be a valid id.
func (t *Tokenizer) PadID() int64 {
	switch {
	case t.pad >= 0:
		return t.pad
	case t.eos >= 0:
		return t.eos
	}
	return 0
}

// TokenID returns the id of a token, such as "</s>".
func (t *Tokenizer) TokenID(token string) (int64, bool) {
	id, ok := t.tk.TokenToId(token)
	return int64(id), ok
}

// Encode returns the token ids of text. With addSpecial the tokenizer's
// post-processor adds its special tokens (for Llama, a leading BOS), as
// HF's tokenizer(text) does by default.
func (t *Tokenizer) Encode(text string, addSpecial bool) (ids []int64, err error) {
	defer func() {
		if r := recover(); r != nil {
			ids, err = nil, errorf("tokenizer %s: encoding %q: %v", t.path, text, r)
		}
	}()
	enc, err := t.tk.Encode(tokenizer.NewSingleEncodeInput(tokenizer.NewInputSequence(text)), addSpecial)
	if err != nil {
		return nil, errorf("tokenizer %s: encoding %q: %v", t.path, text, err)
	}
	ids = make([]int64, 0, len(enc.Ids))
	for i, id := range enc.Ids {
		if t.byteIDs != nil && int64(id) == t.unk && i < len(enc.Offsets) && len(enc.Offsets[i]) == 2 {
			lo, hi := enc.Offsets[i][0], enc.Offsets[i][1]
			if 0 <= lo && lo < hi && hi <= len(text) && text[lo:hi] != t.unkToken {
				for _, c := range []byte(text[lo:hi]) {
					ids = append(ids, t.byteIDs[c])
				}
				continue
			}
		}
		ids = append(ids, int64(id))
	}
	return ids, nil
}

// Decode returns the text of ids. With skipSpecial, special tokens (BOS,
// EOS, padding) are left out. An id outside the vocabulary is an error.
func (t *Tokenizer) Decode(ids []int64, skipSpecial bool) (s string, err error) {
	in := make([]int, 0, len(ids))
	for i, id := range ids {
		if id < 0 || id >= int64(t.vocabSize) {
			return "", errorf("tokenizer %s: token id %d at position %d is outside the vocabulary of %d", t.path, id, i, t.vocabSize)
		}
		if !skipSpecial || !t.special[int(id)] {
			in = append(in, int(id))
		}
	}
	if len(in) == 0 {
		return "", nil // sugarme's Strip decoder panics on no tokens
	}
	defer func() {
		if r := recover(); r != nil {
			s, err = "", errorf("tokenizer %s: decoding %v: %v", t.path, ids, r)
		}
	}()
	return t.tk.Decode(in, false), nil
}

// CheckModelVocab reports an error when the tokenizer can produce ids that
// a model with an embedding table of modelVocab rows cannot look up.
func (t *Tokenizer) CheckModelVocab(modelVocab int) error {
	if t.vocabSize > modelVocab {
		return errorf("tokenizer %s has %d tokens, more than the model's vocabulary of %d", t.path, t.vocabSize, modelVocab)
	}
	return nil
}
