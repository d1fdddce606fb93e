// Package adapter implements two few-shot methods that adapt a frozen CLIP
// through small modules on top of its features, as train.Method values:
//
//   - CLIP-Adapter (Gao et al., arXiv 2110.04544): a bottleneck MLP on the
//     image features (and/or on the text classifier) mixed with the original
//     features through a residual ratio, trained with cross-entropy.
//   - Tip-Adapter and Tip-Adapter-F (Zhang et al., ECCV 2022): a key-value
//     cache built from the few-shot training features, combined with the
//     zero-shot logits; training-free, or with the keys fine-tuned (-F). Both
//     choose their two hyper-parameters by a grid search on validation
//     features.
//
// Both build the zero-shot text classifier from Context.Text: every class
// name is put into each prompt template, the encoded texts are L2-normalized,
// averaged per class over the templates and normalized again (prompt
// ensembling; with one template this is the single-template classifier).
//
// Randomness (CLIP-Adapter's initialization) comes from math/rand/v2 seeded
// with Context.Seed; libtorch's generator is never used.
//
// Gradient mode is per OS thread in libtorch: callers lock their goroutine
// to its thread (runtime.LockOSThread) before Init, training and Tune.
package adapter
