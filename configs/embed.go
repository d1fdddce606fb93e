// Package configs holds the toolkit's TOML run configurations. The demo
// configuration is embedded in the train command as its default.
package configs

import _ "embed"

//go:generate go run ./gen .

// Demo is configs/demo.toml: a synthetic dataset and a small randomly
// initialized CLIP, for `make demo`.
//
//go:embed demo.toml
var Demo string
