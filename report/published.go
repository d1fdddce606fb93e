package report

import (
	_ "embed"
	"encoding/csv"
	"fmt"
	"strconv"
	"strings"
)

// publishedCSV holds the published numbers (see the file's header).
//
//go:embed published.csv
var publishedCSV string

// AverageDataset is the dataset name of averages over the paper's 11
// datasets.
const AverageDataset = "Average"

// Published is one published top-1 accuracy.
type Published struct {
	// Dataset is the toolkit's canonical name (datasets.Names), or
	// AverageDataset.
	Dataset string
	// Method is the toolkit's method name (zeroshot, coop, ...).
	Method   string
	Backbone string
	// Shots is 0 for zero-shot CLIP.
	Shots int
	Top1  float64
	// Source says which paper, table or log the number comes from.
	Source string
}

// PublishedResults returns the published numbers stored in the package
// (published.csv, transcribed from docs/results.md §1–§6 and §8).
func PublishedResults() ([]Published, error) {
	return parsePublished(publishedCSV)
}

func parsePublished(text string) ([]Published, error) {
	r := csv.NewReader(strings.NewReader(text))
	r.Comment = '#'
	r.FieldsPerRecord = 6
	recs, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("published.csv: %w", err)
	}
	if len(recs) == 0 || strings.Join(recs[0], ",") != "dataset,method,backbone,shots,top1,source" {
		return nil, fmt.Errorf("published.csv: bad header")
	}
	seen := map[pubKey]bool{}
	var out []Published
	for i, rec := range recs[1:] {
		shots, err := strconv.Atoi(rec[3])
		if err != nil {
			return nil, fmt.Errorf("published.csv row %d: shots %q", i+2, rec[3])
		}
		top1, err := strconv.ParseFloat(rec[4], 64)
		if err != nil || top1 < 0 || top1 > 100 {
			return nil, fmt.Errorf("published.csv row %d: top1 %q", i+2, rec[4])
		}
		p := Published{Dataset: rec[0], Method: rec[1], Backbone: rec[2], Shots: shots, Top1: top1, Source: rec[5]}
		k := pubKey{p.Dataset, p.Method, p.Backbone, p.Shots}
		if seen[k] {
			return nil, fmt.Errorf("published.csv row %d: %v twice", i+2, k)
		}
		seen[k] = true
		out = append(out, p)
	}
	return out, nil
}

type pubKey struct {
	dataset, method, backbone string
	shots                     int
}
