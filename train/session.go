package train

import (
	"os"
	"path/filepath"
	"runtime/debug"

	"google.golang.org/protobuf/proto"

	"github.com/peftonnx/peftonnx/graph"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// NewSession opens an ONNX Runtime session over a training graph, such as
// the one autodiff.Build returns, set up as the Trainer sets up its own:
//
//   - Weights that m maps from external data files stay there: the
//     serialized graph refers to them and ONNX Runtime reads them from
//     m.Dir itself, so no inline copy of the frozen weights is made on
//     either side. Other tensors are serialized inline.
//   - A graph whose inline part would pass the 2 GiB protobuf limit (a
//     float16 model upcast to float32 for training, say) is saved with all
//     its large tensors in a temporary folder (os.TempDir, or $TMPDIR) and
//     opened from there; the folder is removed once ONNX Runtime has read
//     it.
//   - Memory patterns are off. ONNX Runtime's memory patterns plan one
//     block for all of a run's intermediates; for a training graph, whose
//     forward values live on into the backward, that block is far larger
//     than what is live at any time. Off, the peak of a GPT-2-small-sized
//     LoRA step falls from 5.4 to 3.4 GB at no cost in time.
//
// The caller's options come after these, so they can override them. Once
// the session is open, the serialized bytes and the garbage that building
// the graph left are handed back to the operating system, so that they do
// not add to the memory that training needs.
func NewSession(m *graph.Model, opts ...rt.Option) (*rt.Session, error) {
	opts = append([]rt.Option{rt.WithMemoryPattern(false)}, opts...)
	var s *rt.Session
	var err error
	if proto.Size(m.Proto) > spillAbove {
		s, err = openSpilled(m, opts)
	} else {
		var b []byte
		var dir string
		if b, dir, err = m.MarshalReferencing(); err != nil {
			return nil, errorf("%v", err)
		}
		if dir != "" {
			opts = append([]rt.Option{rt.WithConfigEntry(externalFolderKey, dir)}, opts...)
		}
		s, err = rt.NewSessionFromBytes(b, opts...)
	}
	if err != nil {
		return nil, errorf("%v", err)
	}
	debug.FreeOSMemory()
	return s, nil
}

// spillAbove is the serialized size above which NewSession saves the graph
// with external data instead of handing it over in memory: the protobuf
// limit, less a margin for what serialization adds. A variable for tests.
var spillAbove = 2<<30 - 64<<20

// openSpilled saves m with every tensor of 1 KiB or more in an external
// data file, in a temporary folder, opens the session from there and
// removes the folder: ONNX Runtime has read or mapped what it needs by
// then (a mapping outlives the file's name).
func openSpilled(m *graph.Model, opts []rt.Option) (*rt.Session, error) {
	dir, err := os.MkdirTemp("", "peftonnx-train-")
	if err != nil {
		return nil, errorf("saving the training graph: %v", err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "train.onnx")
	if err := m.Save(path, graph.SaveOptions{ExternalData: true}); err != nil {
		return nil, errorf("saving the training graph to %s (set TMPDIR to a folder with room for the model): %v", dir, err)
	}
	return rt.NewSession(path, opts...)
}

// externalFolderKey is the ONNX Runtime session entry that says where a
// model serialized in memory finds its external data files.
const externalFolderKey = "session.model_external_initializers_file_folder_path"
