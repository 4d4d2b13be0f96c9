package graph

import "github.com/peftonnx/peftonnx/graph/onnxpb"

// Metadata returns the value of the model's metadata entry key (the
// ModelProto's metadata_props) and whether it has one. Where a malformed
// model repeats key, the first entry counts.
func (m *Model) Metadata(key string) (string, bool) {
	for _, p := range m.Proto.MetadataProps {
		if p.Key == key {
			return p.Value, true
		}
	}
	return "", false
}

// SetMetadata stores value under key, in place of every earlier entry
// with that key; the entry goes last.
func (m *Model) SetMetadata(key, value string) {
	m.DeleteMetadata(key)
	m.Proto.MetadataProps = append(m.Proto.MetadataProps, &onnxpb.StringStringEntryProto{Key: key, Value: value})
}

// DeleteMetadata removes every metadata entry with key, keeping the order
// of the others.
func (m *Model) DeleteMetadata(key string) {
	props := m.Proto.MetadataProps[:0]
	for _, p := range m.Proto.MetadataProps {
		if p.Key != key {
			props = append(props, p)
		}
	}
	clear(m.Proto.MetadataProps[len(props):])
	m.Proto.MetadataProps = props
}
