package main

import (
	"strconv"

	"github.com/peftonnx/peftonnx/train"
)

// productsFlag is --recompute-products, a boolean flag with a third
// state: absent, the trainer's default (train.ProductsAuto: recomputed
// on an int4 base, kept on a float one); given, recomputed, or with
// =false kept.
type productsFlag struct{ p *train.Products }

func (f productsFlag) String() string {
	if f.p == nil || *f.p == train.ProductsAuto {
		return "auto"
	}
	return strconv.FormatBool(*f.p == train.ProductsRecomputed)
}

func (f productsFlag) Set(s string) error {
	on, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*f.p = train.ProductsKept
	if on {
		*f.p = train.ProductsRecomputed
	}
	return nil
}

// IsBoolFlag lets --recompute-products stand alone.
func (productsFlag) IsBoolFlag() bool { return true }
