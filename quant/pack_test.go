package quant_test

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/quant"
)

func TestPackKnown(t *testing.T) {
	for _, test := range []struct {
		bits  int
		codes []uint8
		want  []byte
	}{
		// The first code of a pair is the low nibble.
		{4, []uint8{0x1, 0x2, 0xf, 0x0, 0x8, 0x7}, []byte{0x21, 0x0f, 0x78}},
		{2, []uint8{1, 2, 3, 0, 3, 3, 3, 3}, []byte{0b00_11_10_01, 0xff}},
		{8, []uint8{0, 200, 255}, []byte{0, 200, 255}},
	} {
		got := make([]byte, len(test.want))
		quant.PackCodes(got, test.codes, test.bits)
		if !bytes.Equal(got, test.want) {
			t.Errorf("%d bits: PackCodes(%v) = %x, want %x", test.bits, test.codes, got, test.want)
		}
		back := make([]uint8, len(test.codes))
		quant.UnpackCodes(back, test.want, test.bits)
		if !slices.Equal(back, test.codes) {
			t.Errorf("%d bits: UnpackCodes(%x) = %v, want %v", test.bits, test.want, back, test.codes)
		}
	}
}

// TestPackRoundTrip checks that packing and unpacking are inverse,
// bit-exact, both ways and for every width.
func TestPackRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, bits := range []int{2, 4, 8} {
		raw := make([]byte, 257)
		for i := range raw {
			raw[i] = byte(rng.UintN(256))
		}
		codes := make([]uint8, len(raw)*8/bits)
		quant.UnpackCodes(codes, raw, bits)
		for i, c := range codes {
			if int(c) >= 1<<bits {
				t.Fatalf("%d bits: code %d is %d, wider than %d bits", bits, i, c, bits)
			}
		}
		packed := make([]byte, len(raw))
		quant.PackCodes(packed, codes, bits)
		if !bytes.Equal(packed, raw) {
			t.Errorf("%d bits: pack(unpack(bytes)) differs from the bytes", bits)
		}
		again := make([]uint8, len(codes))
		quant.UnpackCodes(again, packed, bits)
		if !slices.Equal(again, codes) {
			t.Errorf("%d bits: unpack(pack(codes)) differs from the codes", bits)
		}
	}
}

// TestWeightRoundTrip checks that a quantized weight's packed bytes, its
// codes and its zero points survive unpacking and packing again.
func TestWeightRoundTrip(t *testing.T) {
	for _, bits := range []int{2, 4, 8} {
		for _, k := range []int{64, 70} {
			w, err := quant.Quantize(normals(k*9, 1, uint64(k+bits)), k, 9, quant.Options{Bits: bits, BlockSize: 16})
			if err != nil {
				t.Fatal(err)
			}
			codes := w.Codes()
			if len(codes) != w.N*w.PaddedK() {
				t.Fatalf("%d bits, K=%d: got %d codes, want %d", bits, k, len(codes), w.N*w.PaddedK())
			}
			b := make([]byte, len(w.B))
			quant.PackCodes(b, codes, bits)
			if !bytes.Equal(b, w.B) {
				t.Errorf("%d bits, K=%d: packing the codes again changes B", bits, k)
			}
			zps := make([]uint8, len(w.ZeroPoints)*8/bits)
			quant.UnpackCodes(zps, w.ZeroPoints, bits)
			z := make([]byte, len(w.ZeroPoints))
			quant.PackCodes(z, zps, bits)
			if !bytes.Equal(z, w.ZeroPoints) {
				t.Errorf("%d bits, K=%d: packing the zero points again changes them", bits, k)
			}
		}
	}
}
