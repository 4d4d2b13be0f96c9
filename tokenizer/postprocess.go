package tokenizer

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// postProcessor adds a sequence's special tokens, when Encode is asked to.
type postProcessor interface {
	process(ids []int64) []int64
}

// templatePiece is a piece of a TemplateProcessing template: a special
// token's name, or the sequence.
type templatePiece struct {
	special  string // the special token's name in the template's table
	sequence bool
}

// templateProcessor is TemplateProcessing for a single sequence: the
// template's pieces in order, each special token written as its ids.
type templateProcessor struct {
	pieces  []templatePiece
	special map[string][]int64
}

func (p *templateProcessor) process(ids []int64) []int64 {
	out := make([]int64, 0, len(ids)+4)
	for _, piece := range p.pieces {
		if piece.sequence {
			out = append(out, ids...)
		} else {
			out = append(out, p.special[piece.special]...)
		}
	}
	return out
}

// surroundProcessor is BertProcessing and RobertaProcessing for a single
// sequence: a token before it and a token after.
type surroundProcessor struct{ first, last int64 }

func (p *surroundProcessor) process(ids []int64) []int64 {
	out := make([]int64, 0, len(ids)+2)
	out = append(out, p.first)
	out = append(out, ids...)
	return append(out, p.last)
}

// processorSequence runs post-processors in order.
type processorSequence []postProcessor

func (s processorSequence) process(ids []int64) []int64 {
	return runSequence(s, ids, postProcessor.process)
}

// noProcessor adds nothing (the ByteLevel post-processor only trims
// offsets, which Encode does not return).
type noProcessor struct{}

func (noProcessor) process(ids []int64) []int64 { return ids }

// postProcessorJSON holds the fields of every post-processor type.
type postProcessorJSON struct {
	Type          string                       `json:"type"`
	Single        json.RawMessage              `json:"single"`
	SpecialTokens map[string]specialTokensJSON `json:"special_tokens"`
	Processors    []json.RawMessage            `json:"processors"`
	Sep           json.RawMessage              `json:"sep"`
	Cls           json.RawMessage              `json:"cls"`
}

// specialTokensJSON is an entry of TemplateProcessing's special_tokens.
type specialTokensJSON struct {
	ID  string   `json:"id"`
	IDs []uint32 `json:"ids"`
}

// templatePieceJSON is a piece of a template written as an object.
type templatePieceJSON struct {
	SpecialToken *struct {
		ID string `json:"id"`
	} `json:"SpecialToken"`
	Sequence *struct {
		ID string `json:"id"`
	} `json:"Sequence"`
}

// parsePostProcessor reads the post-processor at key; inVocab tells
// whether an id is a token's.
func parsePostProcessor(raw json.RawMessage, key string, depth int, inVocab func(int64) bool) (postProcessor, *templateProcessor, error) {
	var j postProcessorJSON
	if err := decodeComponent(raw, key, depth, &j.Type, &j); err != nil {
		return nil, nil, err
	}
	switch j.Type {
	case "TemplateProcessing":
		p, err := parseTemplate(&j, key, inVocab)
		return p, p, err
	case "BertProcessing", "RobertaProcessing":
		cls, err := parseTokenPair(j.Cls, key+".cls", inVocab)
		if err != nil {
			return nil, nil, err
		}
		sep, err := parseTokenPair(j.Sep, key+".sep", inVocab)
		if err != nil {
			return nil, nil, err
		}
		return &surroundProcessor{first: cls, last: sep}, nil, nil
	case "ByteLevel":
		return noProcessor{}, nil, nil
	case "Sequence":
		var seq processorSequence
		var template *templateProcessor
		for i, r := range j.Processors {
			p, t, err := parsePostProcessor(r, fmt.Sprintf("%s.processors[%d]", key, i), depth+1, inVocab)
			if err != nil {
				return nil, nil, err
			}
			if template == nil {
				template = t
			}
			seq = append(seq, p)
		}
		return seq, template, nil
	}
	return nil, nil, unsupported("post-processor", key, j.Type)
}

// parseTemplate reads a TemplateProcessing's single-sequence template.
func parseTemplate(j *postProcessorJSON, key string, inVocab func(int64) bool) (*templateProcessor, error) {
	p := &templateProcessor{special: map[string][]int64{}}
	if isAbsent(j.Single) {
		return nil, fmt.Errorf("%s: no \"single\" template", key)
	}
	var text string
	if err := json.Unmarshal(j.Single, &text); err == nil {
		for _, f := range strings.Split(text, " ") {
			piece, err := parsePieceString(f)
			if err != nil {
				return nil, fmt.Errorf("%s.single: %w", key, err)
			}
			p.pieces = append(p.pieces, piece)
		}
	} else {
		var pieces []templatePieceJSON
		if err := decodeJSON(j.Single, key+".single", &pieces); err != nil {
			return nil, err
		}
		for i, pj := range pieces {
			switch {
			case pj.SpecialToken != nil:
				p.pieces = append(p.pieces, templatePiece{special: pj.SpecialToken.ID})
			case pj.Sequence != nil && pj.Sequence.ID == "A":
				p.pieces = append(p.pieces, templatePiece{sequence: true})
			case pj.Sequence != nil:
				return nil, fmt.Errorf("%s.single[%d]: a single-sequence template has sequence A only, not %s", key, i, quote(pj.Sequence.ID))
			default:
				return nil, fmt.Errorf("%s.single[%d]: want {\"SpecialToken\": ...} or {\"Sequence\": ...}", key, i)
			}
		}
	}
	for name, st := range j.SpecialTokens {
		ids := make([]int64, len(st.IDs))
		for i, id := range st.IDs {
			if !inVocab(int64(id)) {
				return nil, fmt.Errorf("%s.special_tokens[%s]: id %d is not a token's", key, quote(name), id)
			}
			ids[i] = int64(id)
		}
		p.special[name] = ids
	}
	for _, piece := range p.pieces {
		if _, ok := p.special[piece.special]; !piece.sequence && !ok {
			return nil, fmt.Errorf("%s: the template's special token %s is not in special_tokens", key, quote(piece.special))
		}
	}
	return p, nil
}

// parsePieceString reads a piece of a template written as a string: "$A",
// "$B", "$", "$0" (a type id) for the sequence, else a special token's
// name, each with an optional ":type_id".
func parsePieceString(s string) (templatePiece, error) {
	id := s
	if before, after, ok := strings.Cut(s, ":"); ok {
		if _, err := strconv.ParseUint(after, 10, 32); err != nil || strings.Contains(after, ":") {
			return templatePiece{}, fmt.Errorf("cannot read template piece %s", quote(s))
		}
		id = before
	}
	rest, isSeq := strings.CutPrefix(id, "$")
	if !isSeq {
		return templatePiece{special: id}, nil
	}
	switch rest {
	case "", "A", "a":
		return templatePiece{sequence: true}, nil
	case "B", "b":
		return templatePiece{}, fmt.Errorf("a single-sequence template has sequence A only, not %s", quote(s))
	}
	if _, err := strconv.ParseUint(rest, 10, 32); err != nil {
		return templatePiece{}, fmt.Errorf("cannot read template piece %s", quote(s))
	}
	return templatePiece{sequence: true}, nil
}

// parseTokenPair reads a [token, id] pair of BertProcessing.
func parseTokenPair(raw json.RawMessage, key string, inVocab func(int64) bool) (int64, error) {
	var pair []json.RawMessage
	if err := decodeJSON(raw, key, &pair); err != nil {
		return 0, err
	}
	var id uint32
	if len(pair) != 2 {
		return 0, fmt.Errorf("%s: want [token, id]", key)
	}
	if err := decodeJSON(pair[1], key+"[1]", &id); err != nil {
		return 0, err
	}
	if !inVocab(int64(id)) {
		return 0, fmt.Errorf("%s: id %d is not a token's", key, id)
	}
	return int64(id), nil
}
