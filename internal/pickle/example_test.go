package pickle_test

import (
	"fmt"

	"github.com/peftonnx/peftonnx/internal/pickle"
	"github.com/peftonnx/peftonnx/npy"
)

// A state dict as paddle.save writes it: arrays by name, and the table of
// parameter names that paddle adds.
func Example() {
	a, _ := npy.New([]int64{2, 2}, []float32{1, 2, 3, 4})
	names := pickle.NewDict()
	names.Set("linear.weight", "linear_0.w_0")
	d := pickle.NewDict()
	d.Set("linear.weight", a)
	d.Set("StructuredToParameterName@@", names)

	b, err := pickle.Encode(d, 4)
	if err != nil {
		panic(err)
	}
	back, err := pickle.DecodeDict(b)
	if err != nil {
		panic(err)
	}
	for _, k := range back.Keys() {
		v, _ := back.Get(k)
		if arr, ok := v.(*npy.Array); ok {
			vals, _ := npy.Values[float32](arr)
			fmt.Println(k, arr, vals)
		} else {
			fmt.Println(k, "dict of", v.(*pickle.Dict).Len())
		}
	}
	_, err = pickle.Decode([]byte("\x80\x02cos\nsystem\n."))
	fmt.Println(err)
	// Output:
	// linear.weight float32 (2, 2) [1 2 3 4]
	// StructuredToParameterName@@ dict of 1
	// pickle: byte 2: GLOBAL: the global os.system is outside the subset (numpy arrays, collections.OrderedDict, _codecs.encode); nothing is imported
}
