package runtime

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/feed"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// ValueInfo describes one input or output of a model, as the model declares
// it.
type ValueInfo struct {
	Name string
	// DType is Undefined where the value is not a plain tensor (a sequence,
	// a map or an optional); this package cannot feed or return those.
	DType dtype.Type
	// Shape holds -1 for a dynamic dimension. It is nil where the model
	// declares no shape at all, and empty for a scalar.
	Shape []int64
	// DimParams holds the symbolic name of each dynamic dimension, such as
	// "batch", and "" for fixed or anonymous ones. It is nil with Shape.
	DimParams []string
	// Optional marks an input that has a default value in the model (an
	// initializer of the same name, IR version 4 and later). A run may leave
	// it unfed. Outputs are never optional.
	Optional bool
}

// String describes v as in `input_ids int64[batch sequence]`.
func (v ValueInfo) String() string { return feed.Input(v).String() }

// FeedPlan sorts the inputs of a model with these inputs and outputs by
// role (feed.Classify): the token ids, masks, positions, caches and the
// rest, and what each one's default is.
func FeedPlan(inputs, outputs []ValueInfo) *feed.Plan {
	return feed.Classify(feedInputs(inputs), feedInputs(outputs))
}

// feedInputs converts vs to package feed's description, which has the
// same fields.
func feedInputs(vs []ValueInfo) []feed.Input {
	in := make([]feed.Input, len(vs))
	for i, v := range vs {
		in[i] = feed.Input(v)
	}
	return in
}

// static reports whether every dimension of v is known.
func (v ValueInfo) static() bool {
	if v.Shape == nil {
		return false
	}
	for _, d := range v.Shape {
		if d < 0 {
			return false
		}
	}
	return true
}

// modelInfo is what a session needs to know about a model before ONNX
// Runtime sees it.
type modelInfo struct {
	irVersion int64
	opset     int64       // version of the default ONNX domain
	inputs    []ValueInfo // graph inputs that ONNX Runtime accepts, in order
	outputs   []ValueInfo
	// defaultSpans locates the initializer of each optional input.
	defaultSpans map[string]span
	// defaultTags locates the tags of the initializer fields of each
	// optional input in the graph (see hideInitializers).
	defaultTags map[string][]span
	// sparseDefaults names optional inputs whose default is a sparse
	// initializer; their defaults cannot be read.
	sparseDefaults map[string]bool
	// kinds describes the outputs that are not tensors ("a sequence of
	// maps from int64 to float32 tensors"), by name.
	kinds map[string]string
}

type span struct{ off, n int64 }

// source gives random access to the bytes of a serialized model.
type source interface {
	at(off int64, n int) ([]byte, error)
	size() int64
}

type memSource []byte

func (m memSource) at(off int64, n int) ([]byte, error) {
	if off < 0 || n < 0 || off+int64(n) > int64(len(m)) {
		return nil, io.ErrUnexpectedEOF
	}
	return m[off : off+int64(n)], nil
}

func (m memSource) size() int64 { return int64(len(m)) }

// fileSource reads a model file through a small block cache, so that the
// scan reads the structure of the model and seeks past its weights.
type fileSource struct {
	f      *os.File
	n      int64
	buf    []byte
	bufOff int64
}

const fileBlock = 64 << 10

func newFileSource(f *os.File) (*fileSource, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return &fileSource{f: f, n: fi.Size()}, nil
}

func (s *fileSource) size() int64 { return s.n }

func (s *fileSource) at(off int64, n int) ([]byte, error) {
	if off < 0 || n < 0 || off+int64(n) > s.n {
		return nil, io.ErrUnexpectedEOF
	}
	if off >= s.bufOff && off+int64(n) <= s.bufOff+int64(len(s.buf)) {
		return s.buf[off-s.bufOff : off-s.bufOff+int64(n)], nil
	}
	if n > fileBlock {
		b := make([]byte, n)
		if _, err := s.f.ReadAt(b, off); err != nil {
			return nil, err
		}
		return b, nil
	}
	size := int64(fileBlock)
	if off+size > s.n {
		size = s.n - off
	}
	if cap(s.buf) < int(size) {
		s.buf = make([]byte, size)
	}
	s.buf = s.buf[:size]
	s.bufOff = off
	if _, err := s.f.ReadAt(s.buf, off); err != nil && !errors.Is(err, io.EOF) {
		s.buf = s.buf[:0]
		return nil, err
	}
	return s.buf[:n], nil
}

var errMalformed = errors.New("malformed protobuf")

// field is one field of a protobuf message: tag locates its tag, for
// varints v holds the value, for length-delimited fields payload locates the
// bytes.
type field struct {
	num     protowire.Number
	typ     protowire.Type
	tag     span
	v       uint64
	payload span
}

// scanMessage calls fn for each field of the message that occupies
// [off, end) of src. It reads only tags and lengths, never payloads.
func scanMessage(src source, off, end int64, fn func(field) error) error {
	for off < end {
		tag, n, err := readVarint(src, off, end)
		if err != nil {
			return err
		}
		num, typ := protowire.DecodeTag(tag)
		if num <= 0 {
			return errMalformed
		}
		f := field{num: num, typ: typ, tag: span{off, int64(n)}}
		off += int64(n)
		switch typ {
		case protowire.VarintType:
			f.v, n, err = readVarint(src, off, end)
			if err != nil {
				return err
			}
			off += int64(n)
		case protowire.Fixed32Type:
			off += 4
		case protowire.Fixed64Type:
			off += 8
		case protowire.BytesType:
			l, n, err := readVarint(src, off, end)
			if err != nil {
				return err
			}
			off += int64(n)
			if l > uint64(end-off) {
				return errMalformed
			}
			f.payload = span{off, int64(l)}
			off += int64(l)
		default:
			return fmt.Errorf("%w: wire type %d", errMalformed, typ)
		}
		if off > end {
			return errMalformed
		}
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

func readVarint(src source, off, end int64) (uint64, int, error) {
	n := min(end-off, int64(protowire.SizeVarint(1<<63)))
	b, err := src.at(off, int(n))
	if err != nil {
		return 0, 0, err
	}
	v, k := protowire.ConsumeVarint(b)
	if k < 0 {
		return 0, 0, errMalformed
	}
	return v, k, nil
}

// ONNX field numbers that the scan reads.
const (
	modelIRVersion     = 1
	modelGraph         = 7
	modelOpsetImport   = 8
	graphInitializer   = 5
	graphInput         = 11
	graphOutput        = 12
	graphSparseInit    = 15
	tensorName         = 8
	sparseTensorValues = 1
)

// readModelInfo reads the IR version, the graph's inputs and outputs and the
// names of its initializers from a serialized ModelProto, without reading
// the weights.
func readModelInfo(src source) (*modelInfo, error) {
	info := &modelInfo{}
	var inputs, outputs []*onnxpb.ValueInfoProto
	inits := map[string]span{}
	initTags := map[string][]span{}
	sparse := map[string]bool{}
	unmarshalAt := func(s span, m proto.Message) error {
		b, err := src.at(s.off, int(s.n))
		if err != nil {
			return err
		}
		return proto.Unmarshal(b, m)
	}
	err := scanMessage(src, 0, src.size(), func(f field) error {
		switch {
		case f.num == modelIRVersion && f.typ == protowire.VarintType:
			info.irVersion = int64(f.v)
		case f.num == modelOpsetImport && f.typ == protowire.BytesType:
			op := &onnxpb.OperatorSetIdProto{}
			if err := unmarshalAt(f.payload, op); err != nil {
				return err
			}
			if d := op.GetDomain(); d == "" || d == "ai.onnx" {
				info.opset = op.GetVersion()
			}
		case f.num == modelGraph && f.typ == protowire.BytesType:
			return scanMessage(src, f.payload.off, f.payload.off+f.payload.n, func(g field) error {
				if g.typ != protowire.BytesType {
					return nil
				}
				switch g.num {
				case graphInput, graphOutput:
					vi := &onnxpb.ValueInfoProto{}
					if err := unmarshalAt(g.payload, vi); err != nil {
						return err
					}
					if g.num == graphInput {
						inputs = append(inputs, vi)
					} else {
						outputs = append(outputs, vi)
					}
				case graphInitializer:
					name, err := tensorNameAt(src, g.payload)
					if err != nil {
						return err
					}
					inits[name] = g.payload
					initTags[name] = append(initTags[name], g.tag)
				case graphSparseInit:
					return scanMessage(src, g.payload.off, g.payload.off+g.payload.n, func(s field) error {
						if s.num != sparseTensorValues || s.typ != protowire.BytesType {
							return nil
						}
						name, err := tensorNameAt(src, s.payload)
						if err != nil {
							return err
						}
						sparse[name] = true
						return nil
					})
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if inputs == nil && outputs == nil {
		return nil, errors.New("no graph inputs or outputs (not an ONNX model?)")
	}
	info.defaultSpans = map[string]span{}
	info.defaultTags = map[string][]span{}
	info.sparseDefaults = map[string]bool{}
	for _, vi := range inputs {
		v := valueInfo(vi)
		s, isInit := inits[v.Name]
		isSparse := sparse[v.Name]
		if isInit || isSparse {
			if info.irVersion < 4 {
				// Before IR 4 an initializer listed as an input is a
				// constant; ONNX Runtime does not let a run override it.
				continue
			}
			v.Optional = true
			if isInit {
				info.defaultSpans[v.Name] = s
				info.defaultTags[v.Name] = initTags[v.Name]
			} else {
				info.sparseDefaults[v.Name] = true
			}
		}
		info.inputs = append(info.inputs, v)
	}
	info.kinds = map[string]string{}
	for _, vi := range outputs {
		info.outputs = append(info.outputs, valueInfo(vi))
		if vi.GetType().GetTensorType() == nil {
			info.kinds[vi.GetName()] = describeType(vi.GetType())
		}
	}
	return info, nil
}

// tensorNameAt returns the name of the TensorProto at s.
func tensorNameAt(src source, s span) (string, error) {
	var name string
	err := scanMessage(src, s.off, s.off+s.n, func(f field) error {
		if f.num == tensorName && f.typ == protowire.BytesType {
			b, err := src.at(f.payload.off, int(f.payload.n))
			if err != nil {
				return err
			}
			name = string(b)
		}
		return nil
	})
	return name, err
}

// valueInfo describes a graph input or output from its declaration, as
// package feed reads it; Optional is left to the caller.
func valueInfo(vi *onnxpb.ValueInfoProto) ValueInfo { return ValueInfo(feed.FromValueInfo(vi, false)) }

// describeType says what a declared type is, in words: "a float32
// tensor", "a sequence of maps from int64 to float32 tensors".
func describeType(t *onnxpb.TypeProto) string {
	switch {
	case t == nil || t.GetValue() == nil:
		return "of no declared type"
	case t.GetTensorType() != nil:
		return "a " + dtype.Type(t.GetTensorType().GetElemType()).String() + " tensor"
	case t.GetSequenceType() != nil:
		return "a sequence of " + plural(describeType(t.GetSequenceType().GetElemType()))
	case t.GetMapType() != nil:
		mt := t.GetMapType()
		return "a map from " + dtype.Type(mt.GetKeyType()).String() + " to " + plural(describeType(mt.GetValueType()))
	case t.GetOptionalType() != nil:
		return "an optional " + strings.TrimPrefix(strings.TrimPrefix(describeType(t.GetOptionalType().GetElemType()), "a "), "an ")
	case t.GetSparseTensorType() != nil:
		return "a sparse " + dtype.Type(t.GetSparseTensorType().GetElemType()).String() + " tensor"
	}
	return "of an unknown kind"
}

// plural turns "a float32 tensor" into "float32 tensors", "a map from …"
// into "maps from …".
func plural(s string) string {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "a "), "an ")
	if head, rest, ok := strings.Cut(s, " from "); ok {
		return head + "s from " + rest
	}
	if head, rest, ok := strings.Cut(s, " of "); ok {
		return head + "s of " + rest
	}
	return s + "s"
}
