package tokenizer_test

import (
	"fmt"
	"log"

	"github.com/peftonnx/peftonnx/tokenizer"
)

func Example() {
	tok, err := tokenizer.Load("testdata/bert-tiny/tokenizer.json")
	if err != nil {
		log.Fatal(err)
	}
	ids, err := tok.Encode("Hello, World!", true)
	if err != nil {
		log.Fatal(err)
	}
	text, err := tok.Decode(ids, true)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ids)
	fmt.Println(text)
	// Output:
	// [2 5 10 6 11 3]
	// hello, world!
}
