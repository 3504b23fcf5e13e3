// Package synth generates synthetic sensor series with known faults, for
// testing anomaly detectors: noise around a level, with spikes, level
// shifts, drift, variance changes and stuck sensors injected at known rows.
// Generation is deterministic for a given seed.
//
// It must not import anything from shopfloor outside internal/anomaly.
package synth
