package npy_test

import (
	"bytes"
	"fmt"

	"github.com/peftonnx/peftonnx/npy"
)

func Example() {
	a, err := npy.New([]int64{2, 3}, []float32{1, 2, 3, 4, 5, 6})
	if err != nil {
		panic(err)
	}
	var buf bytes.Buffer
	if err := npy.Write(&buf, a); err != nil {
		panic(err)
	}

	b, err := npy.Read(&buf)
	if err != nil {
		panic(err)
	}
	values, err := npy.Values[float32](b)
	if err != nil {
		panic(err)
	}
	fmt.Println(b, b.DType.Descr(), values)
	// Output: float32 (2, 3) <f4 [1 2 3 4 5 6]
}

func ExampleValues() {
	a, _ := npy.New([]int64{3}, []int64{7, 8, 9})
	if _, err := npy.Values[int32](a); err != nil {
		fmt.Println(err)
	}
	ids, _ := npy.Values[int64](a)
	fmt.Println(ids)
	// Output:
	// npy: array is int64, not int32
	// [7 8 9]
}
