package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/peftonnx/peftonnx/internal/pkgerr"
)

// IgnoreIndex is the label that the losses skip, as in PyTorch and HF.
const IgnoreIndex = -100

// Example is one training sequence: token ids and their labels, of the
// same length. A label of IgnoreIndex contributes no loss.
type Example struct {
	InputIDs []int64
	Labels   []int64
	// Label is the example's class for sequence classification, when
	// HasLabel is set; IgnoreIndex leaves the example out of the loss.
	Label    int64
	HasLabel bool
	// Target holds the values a regression (MSE) loss wants from the
	// model's output for this example, flattened row-major.
	Target []float32
	// Fields holds the line's other fields whose value is a flat list of
	// numbers, by name: a field named after a model input (input_mask,
	// segment_ids, …) is fed to that input as it is (see Trainer).
	Fields map[string][]float64
	// Line is the example's line in its source file, for messages.
	Line int
}

// Dataset is a list of examples read from a JSONL file.
type Dataset struct {
	// Path names the source in messages.
	Path     string
	Examples []Example
}

// record is one JSONL line, in any of the formats the train command reads.
type record struct {
	InputIDs *[]int64   `json:"input_ids"`
	Labels   *[]int64   `json:"labels"`
	Text     *string    `json:"text"`
	Src      *string    `json:"src"`
	Tgt      *string    `json:"tgt"`
	Label    *int64     `json:"label"`
	Target   *[]float64 `json:"target"`
}

// LoadJSONL reads a JSONL dataset. Each non-blank line is a JSON object in
// one of three forms:
//
//   - {"input_ids": [..], "labels": [..]}: token ids. labels is optional
//     and defaults to input_ids; when given it must have the same length.
//     A label of -100 is ignored by the loss.
//   - {"text": ".."}: text, encoded with tok and its special tokens (for
//     Llama a leading BOS); every token is a label.
//   - {"src": "..", "tgt": ".."}: a prompt and its answer. src is encoded
//     with special tokens, tgt without, and EOS (if tok has one) ends the
//     answer. Only the answer's tokens are labels: src's are -100.
//
// Each form may add the targets of the other tasks: "label", an integer
// class for sequence classification (-100: no loss), and "target", a list
// of numbers for a regression (MSE) loss, the model output's values for
// the example, flattened. Other fields whose value is a flat list of
// numbers are kept in Example.Fields: the trainer feeds one that names a
// model input to that input (one value per token, or the input's fixed
// size per example); the rest are ignored. tok may be nil when every line
// holds input_ids. Errors name the file and line.
func LoadJSONL(path string, tok *Tokenizer) (*Dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errorf("%s: %w", path, pkgerr.Reworded("no such file", err))
		}
		return nil, errorf("%s: %w", path, err)
	}
	defer f.Close()
	return ReadJSONL(f, path, tok)
}

// ReadJSONL reads a JSONL dataset from r, as LoadJSONL does; name is the
// source's name in messages.
func ReadJSONL(r io.Reader, name string, tok *Tokenizer) (*Dataset, error) {
	d := &Dataset{Path: name}
	br := bufio.NewReader(r)
	for line := 1; ; line++ {
		b, err := readLine(br)
		if errors.Is(err, errLineTooLong) {
			return nil, errorf("%s:%d: the line is longer than %d bytes (PEFTONNX_MAX_LINE_BYTES)", name, line, MaxLineBytes)
		}
		if err != nil && err != io.EOF {
			return nil, errorf("%s:%d: %w", name, line, err)
		}
		if t := bytes.TrimSpace(b); len(t) > 0 {
			ex, perr := parseRecord(t, tok)
			if perr != nil {
				return nil, errorf("%s:%d: %w", name, line, perr)
			}
			ex.Line = line
			d.Examples = append(d.Examples, ex)
		}
		if err == io.EOF {
			break
		}
	}
	if len(d.Examples) == 0 {
		return nil, errorf("%s: no examples", name)
	}
	return d, nil
}

// parseRecord turns one JSON line into an example.
func parseRecord(b []byte, tok *Tokenizer) (Example, error) {
	if b[0] != '{' {
		return Example{}, fmt.Errorf(`the line is not a JSON object (it starts with %q); each line is one object such as {"input_ids": [1, 2, 3]} or {"text": "..."}`, b[:1])
	}
	var rec record
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&rec); err != nil {
		return Example{}, jsonError(err)
	}
	if dec.More() {
		return Example{}, errors.New("invalid JSON: more than one value on the line")
	}
	ex, err := parseTokens(&rec, tok)
	if err != nil {
		return Example{}, err
	}
	if ex.Fields, err = numericFields(b); err != nil {
		return Example{}, err
	}
	if rec.Label != nil {
		if l := *rec.Label; l < 0 && l != IgnoreIndex {
			return Example{}, fmt.Errorf("label is %d: a class label is >= 0, or %d", l, IgnoreIndex)
		}
		ex.Label, ex.HasLabel = *rec.Label, true
	}
	if rec.Target != nil {
		if len(*rec.Target) == 0 {
			return Example{}, errors.New("empty target")
		}
		ex.Target = make([]float32, len(*rec.Target))
		for i, v := range *rec.Target {
			f := float32(v)
			if math.IsInf(float64(f), 0) {
				return Example{}, fmt.Errorf("target[%d] is %g, beyond float32", i, v)
			}
			ex.Target[i] = f
		}
	}
	return ex, nil
}

// parseTokens reads the token ids and token labels of a record.
func parseTokens(rec *record, tok *Tokenizer) (Example, error) {
	switch {
	case rec.InputIDs != nil:
		ids := *rec.InputIDs
		if len(ids) == 0 {
			return Example{}, errors.New("empty input_ids")
		}
		for i, id := range ids {
			if id < 0 {
				return Example{}, fmt.Errorf("input_ids[%d] is %d, a negative token id", i, id)
			}
		}
		labels := ids
		if rec.Labels != nil {
			labels = *rec.Labels
			if len(labels) != len(ids) {
				return Example{}, fmt.Errorf("labels has %d values, input_ids %d: they must have the same length", len(labels), len(ids))
			}
			for i, l := range labels {
				if l < 0 && l != IgnoreIndex {
					return Example{}, fmt.Errorf("labels[%d] is %d: a label is a token id or %d", i, l, IgnoreIndex)
				}
			}
		}
		return Example{InputIDs: ids, Labels: append([]int64(nil), labels...)}, nil
	case rec.Text != nil:
		if tok == nil {
			return Example{}, errors.New(`a "text" example needs a tokenizer`)
		}
		ids, err := tok.Encode(*rec.Text, true)
		if err != nil {
			return Example{}, err
		}
		if len(ids) == 0 {
			return Example{}, errors.New("text encodes to no tokens")
		}
		return Example{InputIDs: ids, Labels: append([]int64(nil), ids...)}, nil
	case rec.Src != nil || rec.Tgt != nil:
		if rec.Src == nil || rec.Tgt == nil {
			return Example{}, errors.New(`a "src" example needs a "tgt", and a "tgt" a "src"`)
		}
		if tok == nil {
			return Example{}, errors.New(`a "src"/"tgt" example needs a tokenizer`)
		}
		src, err := tok.Encode(*rec.Src, true)
		if err != nil {
			return Example{}, err
		}
		tgt, err := tok.Encode(*rec.Tgt, false)
		if err != nil {
			return Example{}, err
		}
		if eos := tok.EOS(); eos >= 0 {
			tgt = append(tgt, eos)
		}
		ids := append(append([]int64(nil), src...), tgt...)
		labels := make([]int64, len(ids))
		for i := range src {
			labels[i] = IgnoreIndex
		}
		copy(labels[len(src):], tgt)
		return Example{InputIDs: ids, Labels: labels}, nil
	}
	return Example{}, errors.New(`want "input_ids", "text" or "src"/"tgt"`)
}

// knownFields are the keys of record, which numericFields leaves out.
var knownFields = map[string]bool{"input_ids": true, "labels": true, "text": true, "src": true, "tgt": true, "label": true, "target": true}

// numericFields returns the fields of a JSON object, other than the known
// ones, whose value is a flat list of numbers; nil when there are none.
func numericFields(b []byte) (map[string][]float64, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, jsonError(err)
	}
	var fields map[string][]float64
	for k, v := range raw {
		if knownFields[k] || len(v) == 0 || v[0] != '[' {
			continue
		}
		var nums []float64
		if json.Unmarshal(v, &nums) != nil {
			continue // not a flat list of numbers: not an input's values
		}
		if fields == nil {
			fields = map[string][]float64{}
		}
		fields[k] = nums
	}
	return fields, nil
}

// checkIDs reports the first token id that is not below vocabSize.
func (d *Dataset) checkIDs(vocabSize int) error {
	return d.checkBelow("input_ids", vocabSize, fmt.Sprintf("the model's vocabulary of %d", vocabSize))
}

// checkTokenLabels reports the first token label that is not below
// classes, the logits' last axis.
func (d *Dataset) checkTokenLabels(classes int) error {
	return d.checkBelow("labels", classes, fmt.Sprintf("the output's %d classes", classes))
}

// checkBelow reports the first value of an example's field, input_ids or
// labels, that is not below limit; what says what limit is.
func (d *Dataset) checkBelow(field string, limit int, what string) error {
	for _, ex := range d.Examples {
		values := ex.InputIDs
		if field == "labels" {
			values = ex.Labels
		}
		for i, v := range values {
			if v >= int64(limit) {
				return errorf("%s:%d: %s[%d] is %d, outside %s", d.Path, ex.Line, field, i, v, what)
			}
		}
	}
	return nil
}

// jsonError rewords a JSON decoding error for a line-oriented message.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("field %q: cannot use JSON %s as %s", te.Field, te.Value, te.Type)
	}
	return fmt.Errorf("invalid JSON: %w", err)
}

// CheckVocab reports the first token id or label that is not below
// vocabSize, naming its file and line. Run it with the model's vocabulary
// size (the rows of its embedding table) before training: ORT would fail
// later with a less helpful message, or read out of bounds on some
// providers.
func (d *Dataset) CheckVocab(vocabSize int) error {
	if err := d.checkIDs(vocabSize); err != nil {
		return err
	}
	return d.checkBelow("labels", vocabSize, fmt.Sprintf("the model's vocabulary of %d", vocabSize))
}
