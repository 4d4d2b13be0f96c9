package quant

// PackCodes packs codes of bits bits each (2, 4 or 8) into dst, low bits
// first: code i sits in byte i·bits/8 at bit (i·bits) mod 8, so for 4 bits
// the first code of a pair is the low nibble. len(codes) must be
// len(dst)·8/bits; codes are masked to bits bits.
func PackCodes(dst []byte, codes []uint8, bits int) {
	per := 8 / bits
	mask := uint8(1<<bits - 1)
	for i := range dst {
		var b uint8
		for j := range per {
			b |= (codes[i*per+j] & mask) << (j * bits)
		}
		dst[i] = b
	}
}

// UnpackCodes is the inverse of PackCodes: it writes the len(src)·8/bits
// codes held in src to dst.
func UnpackCodes(dst []uint8, src []byte, bits int) {
	per := 8 / bits
	mask := uint8(1<<bits - 1)
	for i, b := range src {
		for j := range per {
			dst[i*per+j] = (b >> (j * bits)) & mask
		}
	}
}
