package tokenizer_test

import (
	"encoding/json"
	"fmt"
	"log"

	"github.com/clipadapter/clipgo/clip/tokenizer"
)

// The output of a "clip tokenize -context 10 TEXT..." command.
func ExampleTokenizer_Tokenize() {
	tok, err := tokenizer.New()
	if err != nil {
		log.Fatal(err)
	}
	rows, err := tok.Tokenize([]string{"a photo of a fox", "Hello, World!"}, 10, false)
	if err != nil {
		log.Fatal(err)
	}
	out, err := json.Marshal(map[string][][]int64{"tokens": rows})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(out))
	fmt.Println(tokenizer.EOTIndex(rows[0]), tok.Decode([]int{320, 1125, 539, 320, 3240}))
	// Output:
	// {"tokens":[[49406,320,1125,539,320,3240,49407,0,0,0],[49406,3306,267,1002,256,49407,0,0,0,0]]}
	// 6 a photo of a fox
}
