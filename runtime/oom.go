package runtime

import (
	"errors"
	"strings"

	"github.com/peftonnx/peftonnx/internal/pkgerr"
)

// ErrOutOfMemory reports that ONNX Runtime could not allocate memory: its
// C++ code throws std::bad_alloc, which reaches Go as that bare text, or
// its arena says "Failed to allocate memory".
var ErrOutOfMemory = errors.New("out of memory")

// ortError returns err, an error from ONNX Runtime while doing what, in
// words that say what happened where ONNX Runtime's own do not: a
// std::bad_alloc becomes ErrOutOfMemory, naming what was being done and
// keeping the original text.
func ortError(what string, err error) error {
	if err == nil || !strings.Contains(err.Error(), "bad_alloc") && !strings.Contains(err.Error(), "Failed to allocate memory") {
		return err
	}
	return pkgerr.Reworded(ErrOutOfMemory.Error()+" while "+what+": ONNX Runtime could not allocate memory; a smaller batch, sequence or model needs less", errors.Join(ErrOutOfMemory, err))
}
