package graph

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"

	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// A model and its external data file are two files, and no file system
// renames two files at once: a save that is killed between the renames,
// or two saves racing, can leave a model beside a data file of another
// save, whose offsets and lengths may still fit. So that this is caught
// instead of run, Save gives every data file it writes an identity, the
// first 128 bits of the SHA-256 of the tensor bytes it holds: a trailer
// after the last tensor, which no offset refers to, and the same identity
// in the model's metadata under DataIDKey ("FILE ID"). Load checks the
// two and then drops the key from the model in memory (it describes the
// files, not the model), so a loaded model saves exactly as before. A
// data file without a trailer (written by another tool, say onnx.save,
// which keeps the metadata) is not checked.

// DataIDKey is the metadata key under which Save records the identity of
// the external data file it wrote.
const DataIDKey = "peftonnx.external_data"

// dataTrailerMagic starts the trailer; the identity, 32 hex digits, and a
// newline follow.
const dataTrailerMagic = "\npeftonnx external data "

const dataTrailerLen = len(dataTrailerMagic) + 32 + 1

// dataID returns the identity of a data file whose tensor bytes hash to
// sum.
func dataID(sum []byte) string { return hex.EncodeToString(sum[:16]) }

// dataTrailer is the trailer that Save appends to a data file of identity id.
func dataTrailer(id string) []byte {
	return []byte(dataTrailerMagic + id + "\n")
}

// setDataID records in m's metadata that file has identity id, and returns
// a function that puts the metadata back as it was.
func (m *Model) setDataID(file, id string) (restore func()) {
	props := m.Proto.MetadataProps
	kept := make([]*onnxpb.StringStringEntryProto, 0, len(props)+1)
	for _, p := range props {
		if p.Key != DataIDKey {
			kept = append(kept, p)
		}
	}
	if id != "" {
		kept = append(kept, &onnxpb.StringStringEntryProto{Key: DataIDKey, Value: file + " " + id})
	}
	m.Proto.MetadataProps = kept
	return func() { m.Proto.MetadataProps = props }
}

// checkDataID verifies that the data file m's metadata names, if any,
// ends in the trailer of the identity recorded with it.
func (m *Model) checkDataID() error {
	value, _ := m.Metadata(DataIDKey)
	if value == "" {
		return nil
	}
	m.setDataID("", "") // checked below; not part of the model in memory
	file, id, ok := strings.Cut(value, " ")
	if !ok || len(id) != 32 {
		return formatErrorf("", "metadata %s: %q is not \"FILE ID\"", DataIDKey, value)
	}
	path := filepath.Join(m.Dir, file)
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil // a model that refers to no such file fails in checkExternal
		}
		return errorf("external data file %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() < int64(dataTrailerLen) {
		return nil // too short to carry a trailer: not one of ours
	}
	tail := make([]byte, dataTrailerLen)
	if _, err := f.ReadAt(tail, st.Size()-int64(dataTrailerLen)); err != nil {
		return errorf("external data file %s: %w", path, err)
	}
	if !bytes.HasPrefix(tail, []byte(dataTrailerMagic)) {
		return nil
	}
	if got := string(tail[len(dataTrailerMagic) : dataTrailerLen-1]); got != id {
		return formatErrorf("", "external data file %s belongs to another save of the model (data identity %s, the model expects %s): a save was interrupted or two ran at once; save the model again", path, got, id)
	}
	return nil
}
