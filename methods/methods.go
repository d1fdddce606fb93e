// Package methods is the table of few-shot methods the toolkit runs: it
// maps each method.name of a run configuration to the package that
// implements it and decodes that method's own [method] keys. cmd/train and
// cmd/sweep share it, so a sweep runs exactly what train runs.
package methods

import (
	"fmt"

	"github.com/clipadapter/clipgo/adapter"
	"github.com/clipadapter/clipgo/coop"
	"github.com/clipadapter/clipgo/probe"
	"github.com/clipadapter/clipgo/train"
	"github.com/clipadapter/clipgo/zeroshot"
)

// Factories maps method.name to the package that implements it. Adding a
// method is one package and one entry here.
func Factories() map[string]train.MethodFactory {
	return map[string]train.MethodFactory{
		"zeroshot":      newZeroShot,
		"linear-probe":  newProbe,
		"coop":          newCoOp,
		"clip-adapter":  newCLIPAdapter,
		"tip-adapter":   func(c *train.Config) (train.Method, any, train.Needs, error) { return newTip(c, false) },
		"tip-adapter-f": func(c *train.Config) (train.Method, any, train.Needs, error) { return newTip(c, true) },
	}
}

// Names returns the method names of Factories in the order of the paper's
// tables: the baselines first, then the adapters.
func Names() []string {
	return []string{"zeroshot", "linear-probe", "coop", "clip-adapter", "tip-adapter", "tip-adapter-f"}
}

// The [method] keys of each method, with their defaults.

type zeroShotKeys struct {
	// Templates: how many of the data.templates to ensemble (0: all).
	Templates int `toml:"templates"`
}

func newZeroShot(c *train.Config) (train.Method, any, train.Needs, error) {
	var k zeroShotKeys
	if err := c.DecodeMethod(&k); err != nil {
		return nil, nil, train.Needs{}, err
	}
	return zeroshot.New(zeroshot.Options{Templates: k.Templates}), &k, train.Needs{}, nil
}

type probeKeys struct {
	Normalize   bool      `toml:"normalize"`
	MaxIter     int       `toml:"max_iter"`
	Tol         float64   `toml:"tol"`
	Cs          []float64 `toml:"cs"`
	SearchSteps int       `toml:"search_steps"`
	C           float64   `toml:"c"`
}

func newProbe(c *train.Config) (train.Method, any, train.Needs, error) {
	d := probe.DefaultOptions()
	k := probeKeys{Normalize: d.Normalize, MaxIter: d.MaxIter, Tol: d.Tol, Cs: d.Cs, SearchSteps: d.SearchSteps, C: d.C}
	if err := c.DecodeMethod(&k); err != nil {
		return nil, nil, train.Needs{}, err
	}
	o := probe.Options{Normalize: k.Normalize, MaxIter: k.MaxIter, Tol: k.Tol, Cs: k.Cs, SearchSteps: k.SearchSteps, C: k.C}
	// The probe fits on test-transform features of the train set.
	return probe.New(o), &k, train.Needs{TrainFeatures: true}, nil
}

type coopKeys struct {
	NCtx               int     `toml:"n_ctx"`
	CtxInit            string  `toml:"ctx_init"`
	ClassSpecific      bool    `toml:"class_specific"`
	ClassTokenPosition string  `toml:"class_token_position"`
	InitStd            float64 `toml:"init_std"`
}

func newCoOp(c *train.Config) (train.Method, any, train.Needs, error) {
	d := coop.DefaultOptions()
	k := coopKeys{NCtx: d.NCtx, CtxInit: d.CtxInit, ClassSpecific: d.ClassSpecific, ClassTokenPosition: d.ClassTokenPosition, InitStd: d.InitStd}
	if err := c.DecodeMethod(&k); err != nil {
		return nil, nil, train.Needs{}, err
	}
	o := coop.Options{NCtx: k.NCtx, CtxInit: k.CtxInit, ClassSpecific: k.ClassSpecific, ClassTokenPosition: k.ClassTokenPosition, InitStd: k.InitStd}
	return coop.New(o), &k, train.Needs{TrainFeatures: true, Augment: true}, nil
}

type clipAdapterKeys struct {
	Variant         string  `toml:"variant"`
	Reduction       int64   `toml:"reduction"`
	Alpha           float64 `toml:"alpha"`
	Beta            float64 `toml:"beta"`
	LearnRatios     bool    `toml:"learn_ratios"`
	ReLUAfterSecond bool    `toml:"relu_after_second"`
	Templates       int     `toml:"templates"`
}

func newCLIPAdapter(c *train.Config) (train.Method, any, train.Needs, error) {
	d := adapter.DefaultCLIPAdapterOptions()
	k := clipAdapterKeys{Variant: d.Variant, Reduction: d.Reduction, Alpha: d.Alpha, Beta: d.Beta, LearnRatios: d.LearnRatios, ReLUAfterSecond: d.ReLUAfterSecond, Templates: d.Templates}
	if err := c.DecodeMethod(&k); err != nil {
		return nil, nil, train.Needs{}, err
	}
	switch k.Variant {
	case adapter.VariantVisual, adapter.VariantText, adapter.VariantBoth:
	default:
		return nil, nil, train.Needs{}, fmt.Errorf("method.variant = %q: want visual, text or both", k.Variant)
	}
	o := adapter.CLIPAdapterOptions{Variant: k.Variant, Reduction: k.Reduction, Alpha: k.Alpha, Beta: k.Beta, LearnRatios: k.LearnRatios, ReLUAfterSecond: k.ReLUAfterSecond, Templates: k.Templates}
	return adapter.NewCLIPAdapter(o), &k, train.Needs{TrainFeatures: true, Augment: true}, nil
}

type tipKeys struct {
	InitAlpha     float64    `toml:"init_alpha"`
	InitBeta      float64    `toml:"init_beta"`
	SearchScale   [2]float64 `toml:"search_scale"`
	SearchSteps   [2]int     `toml:"search_steps"`
	NoSearch      bool       `toml:"no_search"`
	UseLogitScale bool       `toml:"use_logit_scale"`
	Templates     int        `toml:"templates"`
	// AugmentViews is the number of augmented views averaged into the
	// cache keys (Tip-Adapter's augment_epoch).
	AugmentViews int `toml:"augment_views"`
}

func newTip(c *train.Config, finetune bool) (train.Method, any, train.Needs, error) {
	d := adapter.DefaultTipOptions()
	k := tipKeys{InitAlpha: d.InitAlpha, InitBeta: d.InitBeta, SearchScale: d.SearchScale, SearchSteps: d.SearchSteps, NoSearch: d.NoSearch, UseLogitScale: d.UseLogitScale, Templates: d.Templates, AugmentViews: 10}
	if err := c.DecodeMethod(&k); err != nil {
		return nil, nil, train.Needs{}, err
	}
	o := adapter.TipOptions{InitAlpha: k.InitAlpha, InitBeta: k.InitBeta, SearchScale: k.SearchScale, SearchSteps: k.SearchSteps, NoSearch: k.NoSearch, UseLogitScale: k.UseLogitScale, Templates: k.Templates}
	// Tip-Adapter's cache: augment_views views with RandomResizedCrop
	// scale (0.5, 1), averaged; Tip-Adapter-F trains on the same views.
	needs := train.Needs{TrainFeatures: true, Augment: true, Views: k.AugmentViews, MinScale: 0.5}
	if finetune {
		return adapter.NewTipAdapterF(o), &k, needs, nil
	}
	return adapter.NewTipAdapter(o), &k, needs, nil
}
