package graph

import (
	"errors"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/internal/pkgerr"
)

// Model is an ONNX model held in memory.
type Model struct {
	// Proto is the model itself. Edit it through Model's methods, or call
	// Reindex after changing it directly.
	Proto *onnxpb.ModelProto
	// Path is the file the model was loaded from, or "" for a built model.
	Path string
	// Dir is where external data locations are resolved.
	Dir string

	ext *externalStore
	idx *index
}

// New returns a model around p whose external data, if any, is resolved
// relative to dir.
func New(p *onnxpb.ModelProto, dir string) *Model {
	if p.Graph == nil {
		p.Graph = &onnxpb.GraphProto{}
	}
	return &Model{Proto: p, Dir: dir, ext: newExternalStore()}
}

// Load reads an .onnx file. External data is checked but not read: it is
// mapped into memory when a tensor is first accessed.
func Load(path string) (*Model, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errorf("%s: %w", path, pkgerr.Reworded("no such file", err))
		}
		return nil, errorf("%s: %w", path, err)
	}
	m, err := Parse(b, filepath.Dir(path))
	if err != nil {
		if fe := inFile(err, path); fe != nil {
			return nil, fe
		}
		return nil, errorf("%s: %w", path, err)
	}
	m.Path = path
	return m, nil
}

// Parse decodes a serialized model. External data locations are resolved
// relative to dir, and each is checked to exist and be long enough.
func Parse(b []byte, dir string) (*Model, error) {
	if len(b) == 0 {
		return nil, formatErrorf("", "empty model")
	}
	p := &onnxpb.ModelProto{}
	if err := proto.Unmarshal(b, p); err != nil {
		return nil, formatErrorf("", "not an ONNX model: %w", err)
	}
	if p.Graph == nil {
		return nil, formatErrorf("", "not an ONNX model: no graph")
	}
	if p.IrVersion == 0 && len(p.OpsetImport) == 0 {
		return nil, formatErrorf("", "not an ONNX model: no ir_version and no opset_import")
	}
	m := New(p, dir)
	if err := m.checkTensors(); err != nil {
		return nil, err
	}
	if err := m.checkExternal(); err != nil {
		return nil, err
	}
	if err := m.checkDataID(); err != nil {
		return nil, err
	}
	return m, nil
}

// Close releases the memory maps of external data. Tensors read from them
// must not be used afterwards. Close is safe to call more than once, and
// on a nil Model.
func (m *Model) Close() error {
	if m == nil {
		return nil
	}
	return m.ext.close()
}

// Graph returns the main graph.
func (m *Model) Graph() *onnxpb.GraphProto { return m.Proto.Graph }

// Opset returns the version imported for domain ("" or "ai.onnx" for the
// default domain), or 0 when the model does not import it.
func (m *Model) Opset(domain string) int64 {
	for _, o := range m.Proto.OpsetImport {
		d := o.Domain
		if d == "ai.onnx" {
			d = ""
		}
		if d == domain || (domain == "ai.onnx" && d == "") {
			return o.Version
		}
	}
	return 0
}

// SetOpset imports domain at version, replacing an existing import.
func (m *Model) SetOpset(domain string, version int64) {
	for _, o := range m.Proto.OpsetImport {
		if o.Domain == domain || (domain == "" && o.Domain == "ai.onnx") {
			o.Version = version
			return
		}
	}
	m.Proto.OpsetImport = append(m.Proto.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: domain, Version: version})
}

// Clone returns a copy of the model that can be edited independently.
// The bytes of initializers are shared, not copied: nothing in peftonnx
// writes into a tensor's data in place (SetFloat32s and the edits replace
// it), so sharing is safe and a clone of a large model costs no memory.
// Clone only reads m, so several goroutines may clone one model at once.
func (m *Model) Clone() *Model {
	p := cloneSharingRawData(m.Proto.ProtoReflect()).Interface().(*onnxpb.ModelProto)
	return &Model{Proto: p, Path: m.Path, Dir: m.Dir, ext: m.ext.share()}
}

// KeepInitializers returns a model that holds only m's initializers
// named in names (copies of the tensors that share their bytes, as Clone
// shares them; a name m has none for is left out) and shares m's external
// data, which stays mapped until both have closed: a reader of a few
// tensors that outlives m without holding the rest of m's bytes.
func (m *Model) KeepInitializers(names ...string) *Model {
	keep := map[string]bool{}
	for _, n := range names {
		keep[n] = true
	}
	g := &onnxpb.GraphProto{}
	for _, t := range m.Proto.Graph.Initializer {
		if keep[t.GetName()] {
			g.Initializer = append(g.Initializer, cloneSharingRawData(t.ProtoReflect()).Interface().(*onnxpb.TensorProto))
		}
	}
	p := &onnxpb.ModelProto{IrVersion: m.Proto.IrVersion, Graph: g}
	return &Model{Proto: p, Path: m.Path, Dir: m.Dir, ext: m.ext.share()}
}

// rawDataField is TensorProto.raw_data, the one field that
// cloneSharingRawData shares instead of copying.
var rawDataField = (&onnxpb.TensorProto{}).ProtoReflect().Descriptor().Fields().ByName("raw_data")

// cloneSharingRawData returns a deep copy of src, unknown fields included,
// in which every TensorProto's raw_data is the source's slice. It only
// reads src.
func cloneSharingRawData(src protoreflect.Message) protoreflect.Message {
	dst := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			from, to := v.List(), dst.Mutable(fd).List()
			for i := range from.Len() {
				to.Append(cloneValue(fd, from.Get(i)))
			}
		case fd.IsMap():
			to := dst.Mutable(fd).Map()
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				to.Set(k, cloneValue(fd.MapValue(), mv))
				return true
			})
		case fd == rawDataField:
			dst.Set(fd, v)
		default:
			dst.Set(fd, cloneValue(fd, v))
		}
		return true
	})
	if u := src.GetUnknown(); len(u) > 0 {
		dst.SetUnknown(append(protoreflect.RawFields(nil), u...))
	}
	return dst
}

// cloneValue copies one singular value of field fd.
func cloneValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) protoreflect.Value {
	switch {
	case fd.Message() != nil:
		return protoreflect.ValueOfMessage(cloneSharingRawData(v.Message()))
	case fd.Kind() == protoreflect.BytesKind:
		return protoreflect.ValueOfBytes(append([]byte(nil), v.Bytes()...))
	}
	return v
}
