package runtime

import "reflect"

// A tensor's data is a slice that makeData made (tensor.go), held as an
// any. copyAt is the one place that copies between two of them without a
// boxed slice in between, which the cache moves of generation do per row
// and position; sliceAt and dataLen, which run once per step, ask reflect.

// copyAt copies n elements of src, from index soff, into dst from index
// doff. dst and src hold the same Go element type.
func copyAt(dst any, doff int, src any, soff, n int) {
	switch s := src.(type) {
	case []float32:
		copy(dst.([]float32)[doff:doff+n], s[soff:soff+n])
	case []float64:
		copy(dst.([]float64)[doff:doff+n], s[soff:soff+n])
	case []uint16:
		copy(dst.([]uint16)[doff:doff+n], s[soff:soff+n])
	case []int64:
		copy(dst.([]int64)[doff:doff+n], s[soff:soff+n])
	case []int32:
		copy(dst.([]int32)[doff:doff+n], s[soff:soff+n])
	case []int16:
		copy(dst.([]int16)[doff:doff+n], s[soff:soff+n])
	case []int8:
		copy(dst.([]int8)[doff:doff+n], s[soff:soff+n])
	case []uint8:
		copy(dst.([]uint8)[doff:doff+n], s[soff:soff+n])
	case []uint32:
		copy(dst.([]uint32)[doff:doff+n], s[soff:soff+n])
	case []uint64:
		copy(dst.([]uint64)[doff:doff+n], s[soff:soff+n])
	case []bool:
		copy(dst.([]bool)[doff:doff+n], s[soff:soff+n])
	default:
		panic("runtime: copying " + reflect.TypeOf(src).String())
	}
}

// sliceAt returns data[lo:hi].
func sliceAt(data any, lo, hi int) any {
	return reflect.ValueOf(data).Slice(lo, hi).Interface()
}

// sliceData returns the first n elements of data.
func sliceData(data any, n int) any { return sliceAt(data, 0, n) }

// dataLen returns the length of data, 0 for nil.
func dataLen(data any) int {
	if data == nil {
		return 0
	}
	return reflect.ValueOf(data).Len()
}
