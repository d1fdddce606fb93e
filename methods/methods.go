// Package methods is the registry of few-shot methods: each method is
// registered once, in All, with its name (method.name), its label as the
// paper writes it, its keys (the options struct with toml tags, defaults
// and doc comments) and its constructor. Everything that lists methods
// derives from it: the experiment's lookup and error messages, the sweep's
// checks, the demo, the generated configurations, and, through the label
// and rank each run records, the report's order, labels and colours.
//
// Adding a method is one package (Options with toml tags, DefaultOptions,
// and a constructor returning train.Method and train.Needs) and one
// Register line in All.
package methods

import (
	"fmt"
	"strings"

	"github.com/clipadapter/clipgo/adapter"
	"github.com/clipadapter/clipgo/cocoop"
	"github.com/clipadapter/clipgo/config"
	"github.com/clipadapter/clipgo/coop"
	"github.com/clipadapter/clipgo/gda"
	"github.com/clipadapter/clipgo/internal/suggest"
	"github.com/clipadapter/clipgo/probe"
	"github.com/clipadapter/clipgo/prolip"
	"github.com/clipadapter/clipgo/train"
	"github.com/clipadapter/clipgo/zeroshot"
)

// All returns the registered methods in the order of the paper's tables:
// the baselines first, then the adapters, then the methods published after
// the paper.
func All() Registry {
	return Registry{
		Register("zeroshot", "Zero-shot CLIP", zeroshot.DefaultOptions, zeroshot.Build),
		Register("linear-probe", "Linear probe", probe.DefaultOptions, probe.Build),
		Register("coop", "CoOp", coop.DefaultOptions, coop.Build),
		Register("cocoop", "CoCoOp", cocoop.DefaultOptions, cocoop.Build),
		Register("clip-adapter", "CLIP-Adapter", adapter.DefaultCLIPAdapterOptions, adapter.BuildCLIPAdapter),
		Register("tip-adapter", "Tip-Adapter", adapter.DefaultTipOptions, adapter.BuildTipAdapter),
		Register("tip-adapter-f", "Tip-Adapter-F", adapter.DefaultTipOptions, adapter.BuildTipAdapterF),
		Register("gda", "GDA", gda.DefaultOptions, gda.Build),
		Register("prolip", "ProLIP", prolip.DefaultOptions, prolip.Build),
	}
}

// Spec is one registered method.
type Spec struct {
	// Name is the method's method.name.
	Name string
	// Label is the method's name as the paper's tables write it.
	Label string
	// Defaults returns a pointer to a new keys struct holding the
	// method's defaults; config.Method.Decode decodes [method] into it.
	Defaults func() any
	// New builds the method from its keys (a pointer Defaults returned)
	// and says what it needs prepared.
	New func(keys any) (train.Method, train.Needs, error)
}

// Register makes the Spec of a method from its package's typed defaults
// and constructor.
func Register[K any](name, label string, defaults func() K, build func(K) (train.Method, train.Needs, error)) Spec {
	return Spec{
		Name:     name,
		Label:    label,
		Defaults: func() any { k := defaults(); return &k },
		New: func(keys any) (train.Method, train.Needs, error) {
			k, ok := keys.(*K)
			if !ok {
				return nil, train.Needs{}, fmt.Errorf("method %s: keys are %T, want %T", name, keys, k)
			}
			return build(*k)
		},
	}
}

// Registry is an ordered list of methods.
type Registry []Spec

// Names returns the method names in registry order.
func (r Registry) Names() []string {
	names := make([]string, len(r))
	for i, s := range r {
		names[i] = s.Name
	}
	return names
}

// Lookup returns the method called name and its rank (index in r); an
// unknown name is an error listing the methods, with the nearest one.
func (r Registry) Lookup(name string) (Spec, int, error) {
	for i, s := range r {
		if s.Name == name {
			return s, i, nil
		}
	}
	names := r.Names()
	msg := fmt.Sprintf("unknown method %q (want one of %s)", name, strings.Join(names, ", "))
	if i, d := suggest.Nearest(strings.ToLower(name), names); i >= 0 && d <= max(2, len(name)/3) {
		msg = fmt.Sprintf("unknown method %q (did you mean %q? methods: %s)", name, names[i], strings.Join(names, ", "))
	}
	return Spec{}, -1, fmt.Errorf("%s", msg)
}

// Built is a method built from a configuration.
type Built struct {
	Spec Spec
	// Rank is the method's place in the registry.
	Rank   int
	Method train.Method
	// Keys are the decoded keys (defaults filled in), for the resolved
	// config.toml.
	Keys  any
	Needs train.Needs
}

// Build looks up cfg's method.name, decodes its [method] keys strictly
// over the method's defaults and builds it. The caller drops the method.
func (r Registry) Build(cfg *config.Config) (*Built, error) {
	spec, rank, err := r.Lookup(cfg.Method.Name)
	if err != nil {
		return nil, err
	}
	keys := spec.Defaults()
	if err := cfg.Method.Decode(keys); err != nil {
		return nil, err
	}
	m, needs, err := spec.New(keys)
	if err != nil {
		return nil, fmt.Errorf("method %s: %w", spec.Name, err)
	}
	return &Built{Spec: spec, Rank: rank, Method: m, Keys: keys, Needs: needs}, nil
}

// Check reports the errors Build would give for cfg's [method] table (an
// unknown method name, a key or value the method rejects) without
// loading a model or data: it builds the method and drops it. Sweeps call
// it on every cell before the first one starts.
func (r Registry) Check(cfg *config.Config) error {
	b, err := r.Build(cfg)
	if err != nil {
		return err
	}
	b.Method.Drop()
	return nil
}
