// Package config is a run's configuration: its TOML sections, the
// defaults every file is applied on top of, "-set section.key=value"
// overrides, validation with errors that name the key, and the resolved
// file written into the run directory. The [method] table is kept
// undecoded (toml.Primitive) until the method decodes its own keys with
// Method.Decode, so no TOML text is re-encoded and parsed again. It has no
// cgo: the sweep planner and report use it without libtorch.
package config

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/clipadapter/clipgo/internal/suggest"
)

// Config is a run's configuration, decoded strictly from TOML: an unknown
// key is an error that names it and suggests the nearest valid one.
type Config struct {
	Model  ModelConfig  `toml:"model"`
	Data   DataConfig   `toml:"data"`
	Method Method       `toml:"-"`
	Train  TrainConfig  `toml:"train"`
	Output OutputConfig `toml:"output"`
}

// ModelConfig selects the frozen CLIP backbone.
type ModelConfig struct {
	// Name is an official model name (RN50, ViT-B/32, ...), an OpenCLIP
	// name (ViT-B-32/laion2b_s34b_b79k, ...), a path to a TorchScript
	// archive, state dict or safetensors file, or "random:ARCH" for
	// randomly initialized weights (ARCH an official name or "tiny").
	Name string `toml:"name"`
	// Arch names the OpenCLIP architecture (ViT-B-32, ViT-B-32-quickgelu,
	// ...) of a checkpoint file that has no open_clip_config.json beside
	// it; empty: read that file, or treat the weights as OpenAI's.
	Arch string `toml:"arch"`
	// Device is cpu, cuda, cuda:N or auto.
	Device string `toml:"device"`
	// Precision of the frozen encoders: fp32, fp16 (CUDA only) or bf16.
	// With fp16 or bf16 the encoders' weights and activations are half
	// precision (LayerNorm computes in fp32) while learned parameters and
	// optimizer state stay fp32 (mixed precision).
	Precision string `toml:"precision"`
	// CacheDir holds downloaded weights (default $CLIP_CACHE or ~/.cache/clip).
	CacheDir string `toml:"cache_dir"`
	// Seed seeds random initialization for "random:" models.
	Seed uint64 `toml:"seed"`
	// FullTextContext runs the text transformer over all 77 positions
	// instead of stopping after the batch's last end-of-text token (the
	// default, which gives the same features to float rounding).
	FullTextContext bool `toml:"full_text_context"`
}

// DataConfig selects the dataset and the few-shot split.
type DataConfig struct {
	Dataset       string `toml:"dataset"`
	Root          string `toml:"root"`
	Shots         int    `toml:"shots"`
	Seed          int    `toml:"seed"`
	NumWorkers    int    `toml:"num_workers"`
	SkipBadImages bool   `toml:"skip_bad_images"`
	// Templates: "single" (the dataset's CoOp template) or "ensemble"
	// (CLIP's 7 ImageNet templates, plus the single one for other datasets).
	Templates string `toml:"templates"`
	// SynthClasses and SynthPerClass size the synthetic dataset that is
	// generated in Root on first use when Dataset is "synthetic".
	SynthClasses  int `toml:"synth_classes"`
	SynthPerClass int `toml:"synth_per_class"`
	// MaxTest caps the number of test images (0: all), for quick runs.
	MaxTest int `toml:"max_test"`
}

// TrainConfig holds the optimization settings shared by every method.
type TrainConfig struct {
	Epochs    int     `toml:"epochs"`
	BatchSize int     `toml:"batch_size"`
	LR        float64 `toml:"lr"`
	// Optimizer is sgd or adamw.
	Optimizer   string  `toml:"optimizer"`
	Momentum    float64 `toml:"momentum"`
	WeightDecay float64 `toml:"weight_decay"`
	AdamBeta1   float64 `toml:"adam_beta1"`
	AdamBeta2   float64 `toml:"adam_beta2"`
	AdamEps     float64 `toml:"adam_eps"`
	// Schedule is cosine (CoOp: per epoch, constant warm-up), cosine_step
	// (per iteration, Tip-Adapter-F) or constant.
	Schedule     string  `toml:"schedule"`
	WarmupEpochs int     `toml:"warmup_epochs"`
	WarmupLR     float64 `toml:"warmup_lr"`
	// EvalEvery evaluates on val every N epochs (0: only at the end).
	EvalEvery     int `toml:"eval_every"`
	EvalBatchSize int `toml:"eval_batch_size"`
	// Select is "last" (the final epoch, as CoOp) or "best_val".
	Select string `toml:"select"`
	// SelectOn is the data that selects the best epoch (Select best_val)
	// and tunes hyper-parameters (Tip-Adapter's α/β, GDA's α):
	// "fewshot_val" (the few-shot validation split, min(K, 4) per class;
	// the default and the honest protocol), or, to reproduce how some
	// published numbers were selected, "full_val" (the dataset's whole
	// validation split; ImageNet's is its test set) or "test".
	SelectOn string `toml:"select_on"`
	// CacheFeatures computes image features once per augmented view and
	// trains on them; false recomputes them every step (the official way).
	CacheFeatures bool `toml:"cache_features"`
	// AugmentViews is the number of augmented views of the train set that
	// are encoded (epoch e uses view e mod AugmentViews); 0 means one per
	// epoch.
	AugmentViews int `toml:"augment_views"`
	// CheckpointEvery writes a checkpoint every N epochs (0: each epoch).
	CheckpointEvery int `toml:"checkpoint_every"`
}

// OutputConfig says where run directories go.
type OutputConfig struct {
	// Dir is the parent directory of run directories.
	Dir string `toml:"dir"`
	// Name is the run directory's name; empty derives one from the
	// dataset, method, backbone, shots and seed.
	Name string `toml:"name"`
	// SaveTestFeatures writes the test set's features as the method's
	// classifier sees them, its logits and labels into the run directory
	// (test_features.npy, test_logits.npy, test_labels.npy), for the
	// feature-manifold plots of cmd/report -manifold.
	SaveTestFeatures bool `toml:"save_test_features"`
}

// Defaults returns the configuration every file is applied on top of:
// CoOp's optimization settings (docs/hyperparameters.md §1).
func Defaults() Config {
	return Config{
		Model: ModelConfig{Device: "auto", Precision: "fp32"},
		Data:  DataConfig{Shots: 16, Seed: 1, NumWorkers: 4, Templates: "single", SynthClasses: 10, SynthPerClass: 30},
		Train: TrainConfig{Epochs: 200, BatchSize: 32, LR: 0.002, Optimizer: "sgd", Momentum: 0.9, WeightDecay: 5e-4,
			AdamBeta1: 0.9, AdamBeta2: 0.999, AdamEps: 1e-8, Schedule: "cosine", WarmupEpochs: 1, WarmupLR: 1e-5,
			EvalBatchSize: 100, Select: "last", SelectOn: SelectOnFewShotVal, CacheFeatures: true},
		Output: OutputConfig{Dir: "runs"},
	}
}

// Load reads a TOML file over Defaults, applies overrides of the form
// "section.key=value" (value in TOML syntax, or a bare string), and checks
// the result.
func Load(path string, overrides []string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(string(b), overrides)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// layout is the TOML shape of a configuration file: the fixed sections
// decode into their structs, [method] stays a Primitive for the method.
type layout struct {
	Model  *ModelConfig   `toml:"model"`
	Data   *DataConfig    `toml:"data"`
	Method toml.Primitive `toml:"method"`
	Train  *TrainConfig   `toml:"train"`
	Output *OutputConfig  `toml:"output"`
}

// Parse is Load on TOML text.
func Parse(text string, overrides []string) (*Config, error) {
	cfg := Defaults()
	if err := cfg.decodeLayer(text, nil); err != nil {
		return nil, err
	}
	for _, o := range overrides {
		ov, err := parseOverride(o)
		if err != nil {
			return nil, err
		}
		if ov.section != "method" {
			if ft, ok := fieldType(reflect.TypeOf(cfg), []string{ov.section, ov.key}); ok {
				if err := checkValue(ov.section+"."+ov.key, ov.value, ft); err != nil {
					return nil, fmt.Errorf("override %q: %w", o, err)
				}
			}
		}
		if err := cfg.decodeLayer(ov.snippet, &ov); err != nil {
			return nil, fmt.Errorf("override %q: %w", o, err)
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// decodeLayer decodes one TOML document (the file, or one override, ov
// non-nil) over c: the sections it names overwrite only the keys it sets;
// its [method] table sets method.name and is kept for Method.Decode.
func (c *Config) decodeLayer(text string, ov *override) error {
	l := layout{Model: &c.Model, Data: &c.Data, Train: &c.Train, Output: &c.Output}
	md, err := toml.Decode(text, &l)
	if err != nil {
		return err
	}
	if md.IsDefined("method") {
		var named struct {
			Name *string `toml:"name"`
		}
		if err := md.PrimitiveDecode(l.Method, &named); err != nil {
			return fmt.Errorf("method: %w", err)
		}
		if named.Name != nil {
			c.Method.Name = *named.Name
		}
		c.Method.layers = append(c.Method.layers, methodLayer{md: md, prim: l.Method, ov: ov})
	}
	if ov == nil {
		// TOML has checked the types (its errors cite the file's lines);
		// what it lets through is a negative number in an unsigned field.
		var doc map[string]any
		if _, err := toml.Decode(text, &doc); err == nil {
			if err := checkSections(doc, reflect.TypeOf(*c)); err != nil {
				return err
			}
		}
	}
	var und []toml.Key
	for _, k := range md.Undecoded() {
		if k[0] != "method" {
			und = append(und, k)
		}
	}
	return unknownKeys(und, reflect.TypeOf(*c))
}

// override is one "-set section.key=value": the key, the value as TOML
// decodes it, and a one-key TOML document setting it.
type override struct {
	text, section, key string
	value              any
	snippet            string
}

// numberLike matches what a user means as a number (TOML integer or
// float syntax), so that one TOML cannot represent is reported as out of
// range rather than taken as a string.
var numberLike = regexp.MustCompile(`^[+-]?(0x[0-9A-Fa-f_]+|0o[0-7_]+|0b[01_]+|[0-9][0-9_]*(\.[0-9_]+)?([eE][+-]?[0-9_]+)?)$`)

// parseOverride parses "section.key=value". A value that is not TOML (a
// bare word such as imagenet) is taken as a string; a number TOML cannot
// represent (an integer beyond int64) is an error.
func parseOverride(o string) (override, error) {
	key, value, ok := strings.Cut(o, "=")
	if !ok {
		return override{}, fmt.Errorf("override %q: want section.key=value", o)
	}
	parts := strings.Split(strings.TrimSpace(key), ".")
	if len(parts) != 2 || !bareKey.MatchString(parts[0]) || !bareKey.MatchString(parts[1]) {
		return override{}, fmt.Errorf("override %q: want section.key=value", o)
	}
	var probe map[string]any
	if _, err := toml.Decode("v = "+value, &probe); err != nil {
		if v := strings.TrimSpace(value); numberLike.MatchString(v) {
			kind := "a 64-bit integer"
			if !strings.Contains(v, "0x") && strings.ContainsAny(v, ".eE") {
				kind = "a 64-bit float"
			}
			return override{}, fmt.Errorf("override %q: %s.%s: %s is out of range for %s", o, parts[0], parts[1], v, kind)
		}
		value = strconv.Quote(value)
		if _, err := toml.Decode("v = "+value, &probe); err != nil {
			return override{}, fmt.Errorf("override %q: value is neither TOML nor a plain string", o)
		}
	}
	return override{
		text: o, section: parts[0], key: parts[1], value: probe["v"],
		snippet: fmt.Sprintf("[%s]\n%s = %s\n", parts[0], parts[1], value),
	}, nil
}

// fieldType is the Go type of the field a TOML key path names in struct
// type t (by toml tags), or false when there is none.
func fieldType(t reflect.Type, path []string) (reflect.Type, bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if len(path) == 0 {
		return t, true
	}
	if t.Kind() != reflect.Struct {
		return nil, false
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.IsExported() && tomlName(f) == path[0] {
			return fieldType(f.Type, path[1:])
		}
	}
	return nil, false
}

// checkValue checks a decoded TOML value against the Go type it will be
// stored in, so that an override's mistake is reported with the key, the
// expected type and the value given (TOML's own message cites a line of
// the one-line document the override became, and lets a negative number
// wrap around into an unsigned field).
func checkValue(name string, v any, t reflect.Type) error {
	bad := func() error {
		return fmt.Errorf("%s wants %s, got %s", name, typeWord(t), valueWord(v))
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, ok := v.(int64)
		if !ok {
			return bad()
		}
		if reflect.New(t).Elem().OverflowInt(i) {
			return fmt.Errorf("%s: %d is out of range for %s", name, i, typeWord(t))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		i, ok := v.(int64)
		if !ok {
			return bad()
		}
		if i < 0 || reflect.New(t).Elem().OverflowUint(uint64(i)) {
			return fmt.Errorf("%s: %d is out of range for %s", name, i, typeWord(t))
		}
	case reflect.Float32, reflect.Float64:
		switch v.(type) {
		case int64, float64:
		default:
			return bad()
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			return bad()
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return bad()
		}
	case reflect.Slice, reflect.Array:
		a, ok := v.([]any)
		if !ok {
			return bad()
		}
		if t.Kind() == reflect.Array && len(a) != t.Len() {
			return fmt.Errorf("%s wants %s, got %d values", name, typeWord(t), len(a))
		}
		for i, e := range a {
			if err := checkValue(fmt.Sprintf("%s[%d]", name, i), e, t.Elem()); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkSections runs checkValue on every key of the fixed sections of a
// decoded document.
func checkSections(doc map[string]any, t reflect.Type) error {
	for _, section := range sortedKeys(doc) {
		keys, ok := doc[section].(map[string]any)
		if !ok || section == "method" {
			continue
		}
		for _, key := range sortedKeys(keys) {
			if ft, ok := fieldType(t, []string{section, key}); ok {
				if err := checkValue(section+"."+key, keys[key], ft); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// typeWord names a Go type as a user of the configuration knows it.
func typeWord(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.Int8, reflect.Int16, reflect.Int32:
		return fmt.Sprintf("an integer (%d-bit)", t.Bits())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		return "a list of " + strings.TrimPrefix(strings.TrimPrefix(typeWord(t.Elem()), "an "), "a ") + "s"
	case reflect.Array:
		return fmt.Sprintf("a list of %d %ss", t.Len(), strings.TrimPrefix(strings.TrimPrefix(typeWord(t.Elem()), "an "), "a "))
	}
	return t.String()
}

// valueWord describes a decoded TOML value: its kind and the value.
func valueWord(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", x)
	case int64:
		return fmt.Sprintf("the integer %d", x)
	case float64:
		return fmt.Sprintf("the number %v", x)
	case bool:
		return fmt.Sprintf("%v", x)
	case []any:
		return fmt.Sprintf("a list %v", x)
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%v (%T)", v, v)
}

// bareKey matches a TOML bare key.
var bareKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// unknownKeys turns undecoded keys into an error with suggestions.
func unknownKeys(und []toml.Key, t reflect.Type) error {
	if len(und) == 0 {
		return nil
	}
	var msgs []string
	for _, k := range und {
		key := k.String()
		valid := validKeys(t, k[:len(k)-1])
		msg := fmt.Sprintf("unknown key %q", key)
		if s := nearest(k[len(k)-1], valid); s != "" {
			prefix := strings.Join(k[:len(k)-1], ".")
			if prefix != "" {
				prefix += "."
			}
			msg += fmt.Sprintf(" (did you mean %q?)", prefix+s)
		} else if len(valid) > 0 {
			msg += fmt.Sprintf(" (valid: %s)", strings.Join(valid, ", "))
		}
		msgs = append(msgs, msg)
	}
	return fmt.Errorf("%s", strings.Join(msgs, "; "))
}

// validKeys lists the TOML keys of the struct reached by path from t.
func validKeys(t reflect.Type, path []string) []string {
	for _, p := range path {
		if t.Kind() != reflect.Struct {
			return nil
		}
		found := false
		for i := 0; i < t.NumField(); i++ {
			if tomlName(t.Field(i)) == p {
				t = t.Field(i).Type
				found = true
				break
			}
		}
		if !found {
			return nil
		}
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if n := tomlName(t.Field(i)); n != "" && n != "-" {
			keys = append(keys, n)
		}
	}
	sort.Strings(keys)
	return keys
}

func tomlName(f reflect.StructField) string {
	tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if tag == "" {
		return f.Name
	}
	return tag
}

// nearest returns the candidate closest to s in edit distance, if it is
// close enough to be a plausible typo.
func nearest(s string, candidates []string) string {
	lower := make([]string, len(candidates))
	for i, c := range candidates {
		lower[i] = strings.ToLower(c)
	}
	i, d := suggest.Nearest(strings.ToLower(s), lower)
	if i >= 0 && d <= max(2, len(s)/3) {
		return candidates[i]
	}
	return ""
}

func (c *Config) validate() error {
	var errs []string
	if c.Model.Name == "" {
		errs = append(errs, "model.name is required (an official name such as RN50, a file path, or random:tiny)")
	}
	if c.Data.Dataset == "" {
		errs = append(errs, "data.dataset is required")
	}
	if c.Data.Shots < 0 {
		errs = append(errs, fmt.Sprintf("data.shots = %d must be >= 0 (0: the full train split)", c.Data.Shots))
	}
	if c.Method.Name == "" {
		errs = append(errs, "method.name is required")
	}
	switch c.Train.Optimizer {
	case "sgd", "adamw":
	default:
		errs = append(errs, fmt.Sprintf("train.optimizer = %q: want sgd or adamw", c.Train.Optimizer))
	}
	switch c.Train.Schedule {
	case "cosine", "cosine_step", "constant":
	default:
		errs = append(errs, fmt.Sprintf("train.schedule = %q: want cosine, cosine_step or constant", c.Train.Schedule))
	}
	switch c.Train.SelectOn {
	case SelectOnFewShotVal, SelectOnFullVal, SelectOnTest:
	default:
		errs = append(errs, fmt.Sprintf("train.select_on = %q: want %s, %s or %s", c.Train.SelectOn, SelectOnFewShotVal, SelectOnFullVal, SelectOnTest))
	}
	switch c.Train.Select {
	case "last", "best_val":
	default:
		errs = append(errs, fmt.Sprintf("train.select = %q: want last or best_val", c.Train.Select))
	}
	switch c.Model.Precision {
	case "fp32", "fp16", "bf16":
	default:
		errs = append(errs, fmt.Sprintf("model.precision = %q: want fp32, fp16 or bf16", c.Model.Precision))
	}
	switch c.Data.Templates {
	case "single", "ensemble":
	default:
		errs = append(errs, fmt.Sprintf("data.templates = %q: want single or ensemble", c.Data.Templates))
	}
	if c.Train.Epochs < 0 || c.Train.BatchSize <= 0 || c.Train.EvalBatchSize <= 0 {
		errs = append(errs, "train.epochs must be >= 0 and train.batch_size, train.eval_batch_size > 0")
	}
	for _, f := range []struct {
		key string
		v   float64
	}{
		{"train.lr", c.Train.LR}, {"train.momentum", c.Train.Momentum}, {"train.weight_decay", c.Train.WeightDecay},
		{"train.adam_beta1", c.Train.AdamBeta1}, {"train.adam_beta2", c.Train.AdamBeta2}, {"train.adam_eps", c.Train.AdamEps},
		{"train.warmup_lr", c.Train.WarmupLR},
	} {
		// NaN fails every comparison, so "< 0" alone let nan and inf through.
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) || f.v < 0 {
			errs = append(errs, fmt.Sprintf("%s = %v: want a finite value >= 0", f.key, f.v))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// Method is the [method] table: the method's name, and its own keys,
// which only the method knows (Decode).
type Method struct {
	// Name is method.name.
	Name string
	// layers are the [method] tables of the file and of each method.*
	// override, in the order they apply.
	layers []methodLayer
}

type methodLayer struct {
	md   toml.MetaData
	prim toml.Primitive
	// ov is the override this layer came from (nil for the file).
	ov *override
}

// Decode decodes the method's keys (every key of [method] but name, from
// the file and then the overrides) strictly into dst, a pointer to the
// method's options struct already holding its defaults. An unknown key is
// an error naming it, with the nearest valid key.
func (m Method) Decode(dst any) error {
	var msgs []string
	for _, l := range m.layers {
		if l.ov != nil && l.ov.key != "name" {
			if ft, ok := fieldType(reflect.TypeOf(dst), []string{l.ov.key}); ok {
				if err := checkValue("method."+l.ov.key, l.ov.value, ft); err != nil {
					return fmt.Errorf("override %q (method %s): %w", l.ov.text, m.Name, err)
				}
			}
		}
		if err := l.md.PrimitiveDecode(l.prim, dst); err != nil {
			return fmt.Errorf("method %s: %w", m.Name, err)
		}
		for _, k := range l.md.Undecoded() {
			if len(k) < 2 || k[0] != "method" || (len(k) == 2 && k[1] == "name") {
				continue
			}
			valid := validKeys(reflect.TypeOf(dst).Elem(), nil)
			key := strings.Join(k[1:], ".")
			msg := fmt.Sprintf("unknown key \"method.%s\" for method %s", key, m.Name)
			if s := nearest(k[len(k)-1], valid); s != "" {
				msg += fmt.Sprintf(" (did you mean \"method.%s\"?)", s)
			} else {
				msg += fmt.Sprintf(" (valid: name, %s)", strings.Join(valid, ", "))
			}
			msgs = append(msgs, msg)
		}
	}
	if len(msgs) > 0 {
		return fmt.Errorf("%s", strings.Join(msgs, "; "))
	}
	return nil
}

// Resolved encodes the configuration as TOML, with the method's decoded
// options (defaults filled in) as its [method] keys; methodOptions is a
// struct or a pointer to one, or nil for the name alone.
func (c *Config) Resolved(methodOptions any) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# Resolved configuration of this run: defaults, file and -set overrides applied.\n")
	for _, sec := range []struct {
		name string
		v    any
	}{{"model", c.Model}, {"data", c.Data}, {"method", nil}, {"train", c.Train}, {"output", c.Output}} {
		fmt.Fprintf(&buf, "\n[%s]\n", sec.name)
		v := sec.v
		if sec.name == "method" {
			fmt.Fprintf(&buf, "name = %s\n", strconv.Quote(c.Method.Name))
			if v = methodOptions; v == nil {
				continue
			}
		}
		if err := toml.NewEncoder(&buf).Encode(v); err != nil {
			return nil, fmt.Errorf("encode [%s]: %w", sec.name, err)
		}
	}
	return buf.Bytes(), nil
}

// RunName derives a run directory name from the configuration. The
// backbone is the model name with "/" as "-" (ViT-B-32), or a weight
// file's base name without extension.
func (c *Config) RunName() string {
	backbone := c.Model.Name
	if ext := strings.ToLower(filepath.Ext(backbone)); ext == ".pt" || ext == ".pth" || ext == ".bin" || ext == ".safetensors" {
		backbone = strings.TrimSuffix(filepath.Base(backbone), filepath.Ext(backbone))
	}
	backbone = regexp.MustCompile(`[^A-Za-z0-9.@-]+`).ReplaceAllString(backbone, "-")
	name := fmt.Sprintf("%s_%s_%s_%dshot_seed%d", c.Data.Dataset, c.Method.Name, backbone, c.Data.Shots, c.Data.Seed)
	if c.Train.SelectOn != "" && c.Train.SelectOn != SelectOnFewShotVal {
		name += "_select-" + c.Train.SelectOn
	}
	return name
}

// Values of train.select_on.
const (
	// SelectOnFewShotVal selects on the few-shot validation split.
	SelectOnFewShotVal = "fewshot_val"
	// SelectOnFullVal selects on the dataset's whole validation split.
	SelectOnFullVal = "full_val"
	// SelectOnTest selects on the test set (what some published numbers did).
	SelectOnTest = "test"
)
