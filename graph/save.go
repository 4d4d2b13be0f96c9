package graph

import (
	"bufio"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/internal/atomicfile"
)

// protoLimit is the largest model a single protobuf message may hold,
// less a margin for the graph itself.
const protoLimit = 2<<30 - 64<<20

// SaveOptions says how Save lays out a model.
type SaveOptions struct {
	// ExternalData writes tensors of at least Threshold bytes to a separate
	// data file. Save does so anyway when the model would pass 2 GiB.
	ExternalData bool
	// DataFile is the data file's name, relative to the model's folder.
	// The default is the model's file name plus ".data".
	DataFile string
	// Threshold is the smallest tensor, in bytes, that goes to the data
	// file. The default is 1024.
	Threshold int64
}

// externalAlign is the alignment of each tensor in a data file we write,
// so that a mapped tensor starts on a page boundary.
const externalAlign = 4096

// Marshal serializes the model with all tensor data inline. It fails for a
// model over 2 GiB: save such a model with external data instead.
func (m *Model) Marshal() ([]byte, error) {
	restore, err := m.layout(nil, nil, "", 0)
	defer restore()
	if err != nil {
		return nil, err
	}
	if n := proto.Size(m.Proto); n >= 2<<30 {
		return nil, errorf("model is %d bytes, over the 2 GiB protobuf limit: save it with external data", n)
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(m.Proto)
}

// MarshalReferencing serializes the model with the tensors whose data
// lives in external files left as references to those files, and every
// other tensor inline. It returns the folder the references are relative
// to, as an absolute path, or "" when the model has none; a reader of b,
// such as ONNX Runtime's session option
// session.model_external_initializers_file_folder_path, must be pointed
// there. Unlike Marshal, it copies no external bytes into b, so a model
// whose weights are mapped from disk serializes in a few megabytes. It
// fails when the inline part passes 2 GiB.
func (m *Model) MarshalReferencing() (b []byte, dir string, err error) {
	for _, t := range m.Proto.Graph.Initializer {
		if t.DataLocation != onnxpb.TensorProto_EXTERNAL {
			continue
		}
		if m.Dir == "" {
			return nil, "", errorf("tensor %q has external data, but the model has no folder to find it in", t.Name)
		}
		if dir, err = filepath.Abs(m.Dir); err != nil {
			return nil, "", errorf("%w", err)
		}
		break
	}
	if n := proto.Size(m.Proto); n >= 2<<30 {
		return nil, "", errorf("model is %d bytes inline, over the 2 GiB protobuf limit: save it with external data", n)
	}
	b, err = proto.MarshalOptions{Deterministic: true}.Marshal(m.Proto)
	if err != nil {
		return nil, "", errorf("%w", err)
	}
	return b, dir, nil
}

// Save writes the model to path atomically: into temporary files beside
// the destination, renamed into place once complete. External data, if
// any, goes to one data file in the same folder. The model in memory is
// not changed.
func (m *Model) Save(path string, opts SaveOptions) (err error) {
	if opts.Threshold <= 0 {
		opts.Threshold = 1024
	}
	if opts.DataFile == "" {
		opts.DataFile = filepath.Base(path) + ".data"
	}
	if !opts.ExternalData {
		size, err := m.inlineSize()
		if err != nil {
			return err
		}
		opts.ExternalData = size > protoLimit
	}
	var set atomicfile.Set
	defer set.Abort()
	var data *atomicfile.File
	if opts.ExternalData {
		dataPath := filepath.Join(filepath.Dir(path), opts.DataFile)
		if data, err = set.Create(dataPath, 0o644); err != nil {
			return errorf("saving %s: %w", path, err)
		}
	}
	var dataFile *os.File
	if data != nil {
		dataFile = data.File
	}
	dataHash := sha256.New()
	restore, err := m.layout(dataFile, dataHash, opts.DataFile, opts.Threshold)
	defer restore()
	if err != nil {
		return errorf("saving %s: %w", path, err)
	}
	id := ""
	if data != nil {
		id = dataID(dataHash.Sum(nil))
		if _, err := data.Write(dataTrailer(id)); err != nil {
			return errorf("saving %s: %w", data.Path(), err)
		}
	}
	defer m.setDataID(opts.DataFile, id)()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m.Proto)
	if err != nil {
		return errorf("saving %s: %w", path, err)
	}
	// The data file is renamed into place before the model that refers
	// to it.
	if err := set.WriteFile(path, b, 0o644); err != nil {
		return errorf("saving %s: %w", path, err)
	}
	if err := set.Commit(); err != nil {
		return errorf("saving %s: %w", path, err)
	}
	return nil
}

// inlineSize estimates the serialized size with all data inline.
func (m *Model) inlineSize() (int64, error) {
	var n int64
	for _, t := range m.Proto.Graph.Initializer {
		if t.DataLocation == onnxpb.TensorProto_EXTERNAL {
			s, err := byteSize(t)
			if err != nil {
				return 0, err
			}
			n += s
		}
	}
	return n + int64(proto.Size(m.Proto)), nil
}

// savedTensor is what layout changed on a tensor, to put back afterwards.
type savedTensor struct {
	t       *onnxpb.TensorProto
	raw     []byte
	loc     onnxpb.TensorProto_DataLocation
	ext     []*onnxpb.StringStringEntryProto
	floats  []float32
	int32s  []int32
	int64s  []int64
	doubles []float64
	uint64s []uint64
}

// layout rewrites the initializers in place for serialization: tensors of
// at least threshold bytes are appended to data (when data is non-nil) and
// referenced as dataName, and also written to hash; the rest become
// inline raw data. The returned
// function restores the model exactly; it is safe to call when err != nil.
func (m *Model) layout(data *os.File, hash io.Writer, dataName string, threshold int64) (restore func(), err error) {
	var saved []savedTensor
	restore = func() {
		for _, s := range saved {
			s.t.RawData, s.t.DataLocation, s.t.ExternalData = s.raw, s.loc, s.ext
			s.t.FloatData, s.t.Int32Data, s.t.Int64Data, s.t.DoubleData, s.t.Uint64Data = s.floats, s.int32s, s.int64s, s.doubles, s.uint64s
		}
	}
	var w *bufio.Writer
	var off int64
	// written maps the first byte of each region written to the data file
	// to where it went, so that tensors sharing one region (one mapping
	// of the same external bytes, or one slice) are written once.
	type region struct{ off, n int64 }
	written := map[*byte]region{}
	if data != nil {
		w = bufio.NewWriterSize(io.MultiWriter(data, hash), 1<<20)
	}
	for _, t := range m.Proto.Graph.Initializer {
		external := t.DataLocation == onnxpb.TensorProto_EXTERNAL
		size := int64(-1)
		if TypeOf(t).Size() > 0 {
			size, _ = byteSize(t)
		}
		toFile := data != nil && size >= threshold
		if !external && !toFile {
			continue // inline stays inline, typed fields included
		}
		b, err := m.TensorBytes(t)
		if err != nil {
			return restore, err
		}
		saved = append(saved, savedTensor{t: t, raw: t.RawData, loc: t.DataLocation, ext: t.ExternalData,
			floats: t.FloatData, int32s: t.Int32Data, int64s: t.Int64Data, doubles: t.DoubleData, uint64s: t.Uint64Data})
		if !toFile {
			setRaw(t, b)
			continue
		}
		if len(b) > 0 {
			if r, ok := written[&b[0]]; ok && r.n >= int64(len(b)) {
				setRaw(t, nil)
				t.DataLocation = onnxpb.TensorProto_EXTERNAL
				t.ExternalData = externalEntries(dataName, r.off, int64(len(b)))
				continue
			}
		}
		if pad := (externalAlign - off%externalAlign) % externalAlign; pad > 0 {
			if _, err := w.Write(make([]byte, pad)); err != nil {
				return restore, errorf("writing %s: %w", data.Name(), err)
			}
			off += pad
		}
		if _, err := w.Write(b); err != nil {
			return restore, errorf("writing %s: %w", data.Name(), err)
		}
		setRaw(t, nil)
		t.DataLocation = onnxpb.TensorProto_EXTERNAL
		t.ExternalData = externalEntries(dataName, off, int64(len(b)))
		if len(b) > 0 {
			written[&b[0]] = region{off, int64(len(b))}
		}
		off += int64(len(b))
	}
	if w != nil {
		if err := w.Flush(); err != nil {
			return restore, errorf("writing %s: %w", data.Name(), err)
		}
	}
	return restore, nil
}

// externalEntries are the external_data entries of a tensor whose bytes
// are length bytes at offset in location.
func externalEntries(location string, offset, length int64) []*onnxpb.StringStringEntryProto {
	return []*onnxpb.StringStringEntryProto{
		{Key: "location", Value: location},
		{Key: "offset", Value: strconv.FormatInt(offset, 10)},
		{Key: "length", Value: strconv.FormatInt(length, 10)},
	}
}
