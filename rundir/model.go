package rundir

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/clipadapter/clipgo/metrics"
)

// Files of a finished run that make it a classifier of its own.
const (
	// ModelFile holds what a method needs at inference: its parameters,
	// the frozen tensors it built from the training data (Tip-Adapter's
	// cache, the linear probe's classifier) and, in its header, a
	// ModelInfo.
	ModelFile = "model.ckpt"
	// PredictionsFile records the run's own prediction for every test
	// image (see Prediction).
	PredictionsFile = "predictions.csv"
	// EvalDir holds the evaluations of the finished run on other datasets,
	// one EvalDir/<dataset>.json (an EvalResult) each.
	EvalDir = "eval"
)

// ModelFormat is the version of ModelFile this toolkit writes and reads.
const ModelFormat = 1

// ModelInfo is the header of ModelFile: everything besides the tensors
// and the resolved config.toml that inference needs.
type ModelInfo struct {
	// Format is ModelFormat of the writer.
	Format int `json:"format"`
	// Method and MethodLabel are the registry's name and label.
	Method      string `json:"method"`
	MethodLabel string `json:"method_label,omitempty"`
	// Dataset is the canonical name of the training dataset.
	Dataset string `json:"dataset"`
	// Backbone is model.name of the run; BackboneSHA256 is the SHA-256 of
	// its weights file (for a random:ARCH backbone, of its identity
	// "random:ARCH:SEED").
	Backbone       string `json:"backbone"`
	BackboneSHA256 string `json:"backbone_sha256"`
	// ClassNames are the classes in label order, as the method saw them
	// ("_" replaced by spaces); ClassIDs their dataset identifiers (the
	// WordNet ids of ImageNet and its variants), when the dataset has
	// them.
	ClassNames []string `json:"class_names"`
	ClassIDs   []string `json:"class_ids,omitempty"`
	// Templates are the prompt templates the method was given.
	Templates []string `json:"templates"`
	// FeatureDim is D, the size of the backbone's joint embedding.
	FeatureDim int64 `json:"feature_dim"`
	// Extra is the method's train.Saver state (tuned α and β, chosen C).
	Extra map[string]float64 `json:"extra,omitempty"`
}

// Check reports what makes info unusable by this toolkit, naming path.
func (info *ModelInfo) Check(path string) error {
	switch {
	case info.Format == 0:
		return fmt.Errorf("%s: no model format version: not a model file of this toolkit", path)
	case info.Format > ModelFormat:
		return fmt.Errorf("%s: model format %d is newer than this toolkit's (%d): update clipgo", path, info.Format, ModelFormat)
	case info.Method == "":
		return fmt.Errorf("%s: the model file names no method", path)
	case len(info.ClassNames) == 0:
		return fmt.Errorf("%s: the model file lists no classes", path)
	case len(info.ClassIDs) != 0 && len(info.ClassIDs) != len(info.ClassNames):
		return fmt.Errorf("%s: %d class ids for %d classes", path, len(info.ClassIDs), len(info.ClassNames))
	}
	return nil
}

// Prediction is one line of PredictionsFile: an image, its true label and
// the top classes with their softmax probabilities, best first.
type Prediction struct {
	File    string
	Label   int
	Classes []int
	Probs   []float64
}

// predictionHeader is the first line of PredictionsFile.
var predictionHeader = []string{"file", "label", "top", "probs"}

// WritePredictions writes predictions to path atomically as CSV with the
// columns file, label, top (the classes, best first, separated by
// spaces) and probs (their probabilities, same order, %.9g).
func WritePredictions(path string, preds []Prediction) error {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write(predictionHeader)
	for _, p := range preds {
		top := make([]string, len(p.Classes))
		probs := make([]string, len(p.Probs))
		for i, c := range p.Classes {
			top[i] = strconv.Itoa(c)
		}
		for i, v := range p.Probs {
			probs[i] = strconv.FormatFloat(v, 'g', 9, 64)
		}
		w.Write([]string{p.File, strconv.Itoa(p.Label), strings.Join(top, " "), strings.Join(probs, " ")})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return WriteFileAtomic(path, b.Bytes())
}

// ReadPredictions reads DIR/predictions.csv.
func ReadPredictions(dir string) ([]Prediction, error) {
	path := filepath.Join(dir, PredictionsFile)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(rows) == 0 || strings.Join(rows[0], ",") != strings.Join(predictionHeader, ",") {
		return nil, fmt.Errorf("%s: not a predictions file (want the header %s)", path, strings.Join(predictionHeader, ","))
	}
	out := make([]Prediction, 0, len(rows)-1)
	for i, r := range rows[1:] {
		bad := func(what string, err error) error {
			return fmt.Errorf("%s:%d: %s: %v", path, i+2, what, err)
		}
		p := Prediction{File: r[0]}
		if p.Label, err = strconv.Atoi(r[1]); err != nil {
			return nil, bad("label", err)
		}
		for _, s := range strings.Fields(r[2]) {
			c, err := strconv.Atoi(s)
			if err != nil {
				return nil, bad("top", err)
			}
			p.Classes = append(p.Classes, c)
		}
		for _, s := range strings.Fields(r[3]) {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return nil, bad("probs", err)
			}
			p.Probs = append(p.Probs, v)
		}
		if len(p.Probs) != len(p.Classes) {
			return nil, fmt.Errorf("%s:%d: %d classes but %d probabilities", path, i+2, len(p.Classes), len(p.Probs))
		}
		out = append(out, p)
	}
	return out, nil
}

// EvalResult is the content of EvalDir/<dataset>.json: a finished run
// evaluated on another dataset. Test has the fields of Result.Test.
type EvalResult struct {
	// Run describes the evaluated run (its result.json's identity).
	Method      string `json:"method"`
	MethodLabel string `json:"method_label,omitempty"`
	MethodRank  *int   `json:"method_rank,omitempty"`
	// Source is the dataset the run was trained on, Dataset the one
	// evaluated here.
	Source   string `json:"source"`
	Dataset  string `json:"dataset"`
	Backbone string `json:"backbone"`
	Shots    int    `json:"shots"`
	Seed     int    `json:"seed"`
	// Classes is the number of classes of Dataset; Restricted reports that
	// the logits over the run's classes were restricted to them (methods
	// tied to the training labels), otherwise the method was rebuilt with
	// Dataset's class names.
	Classes    int             `json:"classes"`
	Restricted bool            `json:"restricted"`
	Test       metrics.Metrics `json:"test"`
	Seconds    float64         `json:"seconds"`
	Finished   string          `json:"finished"`
}

// EvalFile returns the path of the evaluation of run dir on dataset.
func EvalFile(dir, dataset string) string {
	return filepath.Join(dir, EvalDir, dataset+".json")
}

// ReadEvals reads every DIR/eval/*.json, keyed by file stem.
func ReadEvals(dir string) (map[string]EvalResult, error) {
	files, err := filepath.Glob(filepath.Join(dir, EvalDir, "*.json"))
	if err != nil {
		return nil, err
	}
	out := map[string]EvalResult{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var e EvalResult
		if err := json.Unmarshal(b, &e); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".json")] = e
	}
	return out, nil
}
