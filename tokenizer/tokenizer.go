package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/peftonnx/peftonnx/internal/pkgerr"
)

// Tokenizer encodes text to token ids and back as a HuggingFace
// tokenizer.json says. It is safe for concurrent use.
type Tokenizer struct {
	path string
	opts options

	normalizer    normalizer         // nil when none
	preTokenizer  preTokenizer       // nil when none
	model         model              // never nil
	postProcessor postProcessor      // nil when none
	template      *templateProcessor // the post-processor's template, if it has one
	decoder       decoder            // nil when none

	raw        *matcher // added tokens found in the raw text
	normalized *matcher // added tokens found in the normalized text

	ids       map[string]int64 // token -> id: added tokens, then the model's
	tokens    map[int64]string // id -> token: added tokens, then the model's
	special   map[string]bool  // the special added tokens
	vocabSize int

	bos, eos, pad int64 // -1 when the tokenizer has none
}

// fileJSON is the top level of tokenizer.json.
type fileJSON struct {
	Version       *string         `json:"version"`
	AddedTokens   json.RawMessage `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         json.RawMessage `json:"model"`
}

// addedTokenJSON is an entry of added_tokens.
type addedTokenJSON struct {
	ID         uint32 `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized *bool  `json:"normalized"`
	Special    bool   `json:"special"`
}

// Load reads a HuggingFace tokenizer.json at path, and the
// tokenizer_config.json beside it if there is one (for the special
// tokens' names). Files larger than the limit (DefaultMaxFileBytes,
// WithMaxFileBytes) are refused.
func Load(path string, opts ...Option) (*Tokenizer, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, errorf("%s: %w", path, err)
	}
	b, err := readLimited(path, o.maxFileBytes)
	if errors.Is(err, os.ErrNotExist) {
		return nil, errorf("%s: %w", path, pkgerr.Reworded("no such file", err))
	}
	if err != nil {
		return nil, errorf("%s: %w", path, err)
	}
	t, err := parse(b, path, o)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(filepath.Dir(path), "tokenizer_config.json")
	cfg, err := readLimited(cfgPath, o.maxFileBytes)
	switch {
	case errors.Is(err, os.ErrNotExist):
		cfg = nil
	case err != nil:
		return nil, errorf("%s: %w", cfgPath, err)
	}
	if err := t.setSpecialIDs(cfg, cfgPath); err != nil {
		return nil, err
	}
	return t, nil
}

// Parse reads a tokenizer.json from data, naming it name in errors. It
// reads no tokenizer_config.json; the special tokens come from the
// post-processor's template and the usual token names.
func Parse(data []byte, name string, opts ...Option) (*Tokenizer, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, errorf("%s: %w", name, err)
	}
	if int64(len(data)) > o.maxFileBytes {
		return nil, errorf("%s: %d bytes, more than the limit of %d", name, len(data), o.maxFileBytes)
	}
	t, err := parse(data, name, o)
	if err != nil {
		return nil, err
	}
	if err := t.setSpecialIDs(nil, ""); err != nil {
		return nil, err
	}
	return t, nil
}

// readLimited reads the file at path, refusing one of more than limit
// bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, errors.New("is a directory")
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than the limit of %d bytes", limit)
	}
	return b, nil
}

// parse builds a Tokenizer from the bytes of a tokenizer.json.
func parse(data []byte, name string, o options) (*Tokenizer, error) {
	t, err := build(data, o)
	if err != nil {
		return nil, errorf("%s: %w", name, err)
	}
	t.path = name
	return t, nil
}

// build builds a Tokenizer from the bytes of a tokenizer.json; errors
// name the key at fault.
func build(data []byte, o options) (*Tokenizer, error) {
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("not a tokenizer.json: %w", &jsonError{key: "file", err: err})
	}
	if f.Version != nil && *f.Version != "1.0" {
		return nil, fmt.Errorf("version: unknown tokenizer.json version %s (want \"1.0\")", quote(*f.Version))
	}
	t := &Tokenizer{opts: o, bos: -1, eos: -1, pad: -1}
	var err error
	if t.model, err = parseModel(f.Model, "model"); err != nil {
		return nil, err
	}
	if !isAbsent(f.Normalizer) {
		if t.normalizer, err = parseNormalizer(f.Normalizer, "normalizer", 0); err != nil {
			return nil, err
		}
	}
	if !isAbsent(f.PreTokenizer) {
		if t.preTokenizer, err = parsePreTokenizer(f.PreTokenizer, "pre_tokenizer", 0); err != nil {
			return nil, err
		}
	}
	if !isAbsent(f.Decoder) {
		if t.decoder, err = parseDecoder(f.Decoder, "decoder", 0); err != nil {
			return nil, err
		}
	}
	if err := t.buildVocab(f.AddedTokens); err != nil {
		return nil, err
	}
	if !isAbsent(f.PostProcessor) {
		inVocab := func(id int64) bool { _, ok := t.tokens[id]; return ok }
		if t.postProcessor, t.template, err = parsePostProcessor(f.PostProcessor, "post_processor", 0, inVocab); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// maxAddedBytes bounds the text of all added tokens together, which the
// matchers hold (real tokenizers have a few kilobytes).
const maxAddedBytes = 4 << 20

// buildVocab reads the added tokens and makes the id maps: the model's
// vocabulary, and the added tokens over it. An added token takes the id of
// the token it names, else the next id after the model's vocabulary, as HF
// tokenizers assigns them (the file's ids are not consulted).
func (t *Tokenizer) buildVocab(raw json.RawMessage) error {
	vocab := t.model.tokens()
	t.ids = make(map[string]int64, len(vocab))
	t.tokens = make(map[int64]string, len(vocab))
	for tok, id := range vocab {
		if other, dup := t.tokens[int64(id)]; dup {
			a, b := min(tok, other), max(tok, other)
			return fmt.Errorf("model.vocab: tokens %s and %s both have id %d", quote(a), quote(b), id)
		}
		t.ids[tok] = int64(id)
		t.tokens[int64(id)] = tok
	}
	var entries []addedTokenJSON
	if !isAbsent(raw) {
		if err := decodeJSON(raw, "added_tokens", &entries); err != nil {
			return err
		}
	}
	added := map[string]*addedToken{}
	var order []*addedToken
	next := int64(len(vocab))
	size := 0
	for _, e := range entries {
		if e.Content == "" {
			continue
		}
		if size += len(e.Content); size > maxAddedBytes {
			return fmt.Errorf("added_tokens: more than %d bytes of token text", maxAddedBytes)
		}
		tok := &addedToken{
			content: e.Content, singleWord: e.SingleWord, lstrip: e.LStrip, rstrip: e.RStrip,
			normalized: !e.Special, special: e.Special,
		}
		if e.Normalized != nil {
			tok.normalized = *e.Normalized
		}
		if old, ok := added[e.Content]; ok {
			tok.id = old.id
			*old = *tok
			continue
		}
		if id, ok := t.ids[e.Content]; ok {
			tok.id = id
		} else {
			tok.id = next
			next++
		}
		added[e.Content] = tok
		order = append(order, tok)
	}
	t.special = map[string]bool{}
	var rawPatterns, normPatterns []string
	var rawTokens, normTokens []*addedToken
	for _, tok := range order {
		t.ids[tok.content] = tok.id
		t.tokens[tok.id] = tok.content
		if tok.special {
			t.special[tok.content] = true
		}
		if tok.normalized {
			p := tok.content
			if t.normalizer != nil {
				p = t.normalizer.normalize(p)
			}
			normPatterns, normTokens = append(normPatterns, p), append(normTokens, tok)
		} else {
			rawPatterns, rawTokens = append(rawPatterns, tok.content), append(rawTokens, tok)
		}
	}
	t.raw = newMatcher(rawPatterns, rawTokens)
	t.normalized = newMatcher(normPatterns, normTokens)
	t.vocabSize = 0
	for id := range t.tokens {
		t.vocabSize = max(t.vocabSize, int(id)+1)
	}
	return nil
}

// Path returns the file the tokenizer was loaded from (the name given to
// Parse).
func (t *Tokenizer) Path() string { return t.path }

// VocabSize returns the number of token ids: one more than the largest id,
// added tokens included. A model's embedding table needs that many rows.
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

// TokenID returns the id of a token, such as "</s>".
func (t *Tokenizer) TokenID(token string) (int64, bool) {
	id, ok := t.ids[token]
	return id, ok
}

// Token returns the token of an id.
func (t *Tokenizer) Token(id int64) (string, bool) {
	tok, ok := t.tokens[id]
	return tok, ok
}

// CheckModelVocab reports an error when the tokenizer can produce ids that
// a model with an embedding table of modelVocab rows cannot look up.
func (t *Tokenizer) CheckModelVocab(modelVocab int) error {
	if t.vocabSize > modelVocab {
		return errorf("%s has %d tokens, more than the model's vocabulary of %d", t.path, t.vocabSize, modelVocab)
	}
	return nil
}
