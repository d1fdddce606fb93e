package config

import (
	"strings"
	"testing"
)

const baseConfig = `
[model]
name = "RN50"
[data]
dataset = "imagenet"
root = "/data"
shots = 4
[method]
name = "clip-adapter"
alpha = 0.6
[train]
epochs = 50
`

func TestParseConfigDefaultsAndOverrides(t *testing.T) {
	cfg, err := Parse(baseConfig, []string{"train.lr=0.01", "data.seed=3", "model.device=cpu", "method.alpha=0.3"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Train.Epochs != 50 || cfg.Train.LR != 0.01 || cfg.Train.BatchSize != 32 || cfg.Data.Seed != 3 || cfg.Data.Shots != 4 {
		t.Errorf("decoded %+v / %+v", cfg.Train, cfg.Data)
	}
	if cfg.Model.Device != "cpu" || cfg.Model.Name != "RN50" || cfg.Method.Name != "clip-adapter" {
		t.Errorf("model %+v method %v", cfg.Model, cfg.Method)
	}
	var opts struct {
		Alpha     float64 `toml:"alpha"`
		Reduction int     `toml:"reduction"`
	}
	opts.Reduction = 4
	if err := cfg.Method.Decode(&opts); err != nil {
		t.Fatal(err)
	}
	if opts.Alpha != 0.3 || opts.Reduction != 4 {
		t.Errorf("method options %+v", opts)
	}
	res, err := cfg.Resolved(&opts)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse(string(res), nil)
	if err != nil {
		t.Fatalf("resolved config does not parse back: %v\n%s", err, res)
	}
	if again.Train != cfg.Train || again.Data != cfg.Data || again.Model != cfg.Model {
		t.Errorf("resolved config round trip changed values:\n%s", res)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name, text string
		overrides  []string
		want       []string
	}{
		{"typo in train", baseConfig + "epoch = 3\n", nil, []string{`unknown key "train.epoch"`, `did you mean "train.epochs"`}},
		{"unknown section key", strings.Replace(baseConfig, "[model]", "[model]\nnmae = 1", 1), nil, []string{`"model.nmae"`, `"model.name"`}},
		{"bad optimizer", baseConfig, []string{"train.optimizer=adam"}, []string{`train.optimizer = "adam"`}},
		{"missing method", strings.Replace(baseConfig, `name = "clip-adapter"`, "", 1), nil, []string{"method.name is required"}},
		{"bad override", baseConfig, []string{"lr=1"}, []string{"want section.key=value"}},
		{"bad toml", "[model\n", nil, []string{"line"}},
		{"lr nan", baseConfig, []string{"train.lr=nan"}, []string{"train.lr = NaN: want a finite value >= 0"}},
		{"lr inf", baseConfig, []string{"train.lr=inf"}, []string{"train.lr = +Inf: want a finite value >= 0"}},
		{"lr negative", baseConfig, []string{"train.lr=-0.1"}, []string{"train.lr = -0.1: want a finite value >= 0"}},
		{"weight decay nan", baseConfig, []string{"train.weight_decay=nan"}, []string{"train.weight_decay = NaN"}},
		{"adam eps -inf", baseConfig, []string{"train.adam_eps=-inf"}, []string{"train.adam_eps = -Inf"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.text, tt.overrides)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestDecodeMethodUnknownKey(t *testing.T) {
	cfg, err := Parse(baseConfig+"\n", []string{"method.aplha=0.1"})
	if err != nil {
		t.Fatal(err)
	}
	var opts struct {
		Alpha float64 `toml:"alpha"`
	}
	err = cfg.Method.Decode(&opts)
	if err == nil || !strings.Contains(err.Error(), `"method.aplha"`) || !strings.Contains(err.Error(), `did you mean "method.alpha"`) {
		t.Errorf("err = %v", err)
	}
}

func TestRunName(t *testing.T) {
	for model, want := range map[string]string{
		"ViT-B/32":             "dtd_coop_ViT-B-32_4shot_seed2",
		"RN50":                 "dtd_coop_RN50_4shot_seed2",
		"/weights/my model.pt": "dtd_coop_my-model_4shot_seed2",
		"random:tiny":          "dtd_coop_random-tiny_4shot_seed2",
		"ViT-L/14@336px":       "dtd_coop_ViT-L-14@336px_4shot_seed2",
	} {
		c := Defaults()
		c.Model.Name, c.Data.Dataset, c.Data.Shots, c.Data.Seed = model, "dtd", 4, 2
		c.Method.Name = "coop"
		if got := c.RunName(); got != want {
			t.Errorf("RunName(%q) = %q, want %q", model, got, want)
		}
	}
}
