package main

import (
	methodtable "github.com/clipadapter/clipgo/methods"
	"github.com/clipadapter/clipgo/train"
)

// methods maps method.name to the package that implements it. The table
// lives in package methods, shared with cmd/sweep.
func methods() map[string]train.MethodFactory { return methodtable.Factories() }
