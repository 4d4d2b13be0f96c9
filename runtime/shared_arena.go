package runtime

import (
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// The shared CPU arena. A session's own arena (ONNX Runtime's default)
// grows by regions that double in size (kNextPowerOfTwo), so a graph whose
// freed blocks no longer fit its next large tensor adds a region as large
// as all the others together: on a GPT-2-small-sized LoRA step at 8×512 the
// second step's peak was 730 MiB above the first's. The shared arena is one
// arena registered with the process's environment that grows by what is
// asked for (kSameAsRequested); sessions opened WithSharedArena allocate
// from it (session.use_env_allocators). It keeps its regions for the life
// of the process, shared by every such session: closing a session hands
// its blocks back to the arena, not to the system.
var sharedArena struct {
	once sync.Once
	err  error
}

// WithSharedArena has the session allocate from the process's shared CPU
// arena (see above) instead of an arena of its own; it is ignored where
// the arena is off (WithMemoryArena(false)). The training sessions of
// package train use it.
func WithSharedArena(on bool) Option {
	return func(c *config) error {
		c.sharedArena = on
		return nil
	}
}

// registerSharedArena registers the shared arena with the environment, once
// per process; Init must have succeeded.
func registerSharedArena() error {
	sharedArena.once.Do(func() {
		info, err := ort.GetMemoryInfo()
		if err != nil {
			sharedArena.err = errorf("the shared CPU arena: %w", err)
			return
		}
		// 0 and -1: ONNX Runtime's defaults for the size limit, the first
		// region and the dead bytes a chunk may keep; 1: kSameAsRequested.
		cfg, err := ort.NewArenaCfg(0, 1, -1, -1)
		if err != nil {
			sharedArena.err = errorf("the shared CPU arena: %w", err)
			return
		}
		defer cfg.Destroy()
		if err := ort.CreateAndRegisterAllocator(info, cfg); err != nil {
			sharedArena.err = errorf("registering the shared CPU arena: %w", err)
		}
	})
	return sharedArena.err
}
