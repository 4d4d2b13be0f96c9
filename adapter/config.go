package adapter

import (
	"fmt"
	"math"
	"regexp"
	"sync"

	"github.com/peftonnx/peftonnx/dtype"
)

// Config is implemented by *LoRAConfig and *PrefixConfig.
type Config interface {
	// PEFTType returns the HuggingFace PEFT peft_type: "LORA" or "PREFIX_TUNING".
	PEFTType() string
	// Validate reports the first field that is out of range.
	Validate() error

	kind() string    // "lora" or "prefix", for messages
	validate() error // Validate without the package prefix
}

// compileFull compiles pattern so that it must match a whole name, as
// Python's re.fullmatch does.
func compileFull(pattern string) (*regexp.Regexp, error) {
	return compileCached(`^(?:` + pattern + `)$`)
}

// compilePatternKey compiles a rank_pattern or alpha_pattern key the way
// HuggingFace PEFT matches it: the key must match a trailing run of
// dot-separated segments of the module name.
func compilePatternKey(key string) (*regexp.Regexp, error) {
	return compileCached(`^(?:.*\.)?(?:` + key + `)$`)
}

var regexpCache sync.Map // string → *regexp.Regexp

func compileCached(expr string) (*regexp.Regexp, error) {
	if re, ok := regexpCache.Load(expr); ok {
		return re.(*regexp.Regexp), nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, err
	}
	regexpCache.Store(expr, re)
	return re, nil
}

// nameToRegexp turns a HuggingFace PEFT target name, which matches a module
// equal to it or ending in "."+name, into the equivalent full-match regex.
func nameToRegexp(name string) string {
	return `(?:.*\.)?` + regexp.QuoteMeta(name)
}

// checkProbability checks a dropout rate.
func checkProbability(what string, p float64) error {
	if math.IsNaN(p) || p < 0 || p >= 1 {
		return fmt.Errorf("%s must be in [0, 1), got %v", what, p)
	}
	return nil
}

// checkTensorParallel checks a tensor_parallel_degree: PaddleNLP writes -1
// for none; 0 and 1 mean none too.
func checkTensorParallel(d int) error {
	if d < -1 {
		return fmt.Errorf("tensor_parallel_degree must be -1 (none) or positive, got %d", d)
	}
	return nil
}

// checkTrainingDType checks the dtype adapter weights are trained in.
func checkTrainingDType(d dtype.Type) error {
	switch storedAs(d) {
	case dtype.Float32, dtype.Float16, dtype.BFloat16:
		return nil
	}
	return fmt.Errorf("dtype must be float32, float16 or bfloat16, got %s", d)
}

// validated is c.Validate: c.validate's error, named as c's kind ("lora
// config: ...").
func validated(c Config) error {
	if err := c.validate(); err != nil {
		return errorf("%s config: %w", c.kind(), err)
	}
	return nil
}
