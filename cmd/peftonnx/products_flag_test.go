package main

import (
	"flag"
	"io"
	"testing"

	"github.com/peftonnx/peftonnx/train"
)

// TestProductsFlag: --recompute-products absent leaves the trainer's
// default, alone it recomputes, =false keeps, anything else is refused.
func TestProductsFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want train.Products
		bad  bool
	}{
		{nil, train.ProductsAuto, false},
		{[]string{"--recompute-products"}, train.ProductsRecomputed, false},
		{[]string{"--recompute-products=true"}, train.ProductsRecomputed, false},
		{[]string{"--recompute-products=false"}, train.ProductsKept, false},
		{[]string{"--recompute-products=maybe"}, 0, true},
	} {
		fs := flag.NewFlagSet("train", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var p train.Products
		fs.Var(productsFlag{&p}, "recompute-products", "")
		err := fs.Parse(c.args)
		switch {
		case c.bad && err == nil:
			t.Errorf("%q: accepted as %v", c.args, p)
		case !c.bad && err != nil:
			t.Errorf("%q: %v", c.args, err)
		case !c.bad && p != c.want:
			t.Errorf("%q: %v, want %v", c.args, p, c.want)
		}
	}
}
