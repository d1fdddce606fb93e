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

// TestOverrideTypeErrors: a -set value of the wrong type names the
// override, the key, the expected type and the value given, and never a
// line number (the override has no lines the user wrote); an integer
// beyond int64 is out of range, not "a string".
func TestOverrideTypeErrors(t *testing.T) {
	tests := []struct {
		override string
		want     string
	}{
		{"train.epochs=abc", `override "train.epochs=abc": train.epochs wants an integer, got the string "abc"`},
		{"train.epochs=1.5", `train.epochs wants an integer, got the number 1.5`},
		{"data.shots=true", `data.shots wants an integer, got true`},
		{"data.shots=[1]", `data.shots wants an integer, got a list [1]`},
		{"data.dataset=3", `data.dataset wants a string, got the integer 3`},
		{"train.lr=fast", `train.lr wants a number, got the string "fast"`},
		{"train.cache_features=1", `train.cache_features wants true or false, got the integer 1`},
		{"train.epochs=99999999999999999999", `train.epochs: 99999999999999999999 is out of range for a 64-bit integer`},
		{"train.lr=1e999", `train.lr: 1e999 is out of range for a 64-bit float`},
		{"model.seed=-1", `model.seed: -1 is out of range for a non-negative integer`},
	}
	for _, tt := range tests {
		t.Run(tt.override, func(t *testing.T) {
			_, err := Parse(baseConfig, []string{tt.override})
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "line ") {
				t.Errorf("error %q cites a line number", err)
			}
		})
	}
}

// TestMethodOverrideTypeErrors: the same for method.* overrides, which are
// checked when the method decodes its options.
func TestMethodOverrideTypeErrors(t *testing.T) {
	type opts struct {
		Alpha       float64    `toml:"alpha"`
		Reduction   int64      `toml:"reduction"`
		SearchSteps [2]int     `toml:"search_steps"`
		Cs          []float64  `toml:"cs"`
		Scale       [2]float64 `toml:"scale"`
	}
	tests := []struct {
		override, want string
	}{
		{"method.reduction=four", `override "method.reduction=four" (method clip-adapter): method.reduction wants an integer, got the string "four"`},
		{"method.alpha=yes", `method.alpha wants a number, got the string "yes"`},
		{"method.search_steps=[1,2,3]", `method.search_steps wants a list of 2 integers, got 3 values`},
		{"method.cs=[1,'a']", `method.cs[1] wants a number, got the string "a"`},
		{"method.reduction=1e3", `method.reduction wants an integer, got the number 1000`},
	}
	for _, tt := range tests {
		t.Run(tt.override, func(t *testing.T) {
			cfg, err := Parse(baseConfig, []string{tt.override})
			if err != nil {
				t.Fatal(err)
			}
			var o opts
			err = cfg.Method.Decode(&o)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "line ") {
				t.Errorf("error %q: want %q and no line number", err, tt.want)
			}
		})
	}
}

// TestFileNegativeUnsigned: TOML decoding wraps -1 into an unsigned field;
// the file's value is checked too.
func TestFileNegativeUnsigned(t *testing.T) {
	_, err := Parse(strings.Replace(baseConfig, `name = "RN50"`, "name = \"RN50\"\nseed = -1", 1), nil)
	if err == nil || !strings.Contains(err.Error(), "model.seed: -1 is out of range") {
		t.Errorf("err = %v", err)
	}
}
