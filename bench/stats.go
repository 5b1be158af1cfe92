package main

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// rate is n items over d, per second.
func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// inBatches calls f on items, size at a time, until it fails.
func inBatches[T any](items []T, size int, f func([]T) error) error {
	for len(items) > 0 {
		batch := items[:min(len(items), size)]
		items = items[len(batch):]
		if err := f(batch); err != nil {
			return err
		}
	}
	return nil
}

// median is the middle value of xs (the mean of the two middle values when
// there is an even number); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// formatRate prints a rate with thousands separators and no decimals.
func formatRate(x float64) string {
	s := fmt.Sprintf("%.0f", x)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// formatRates prints each round's rate, comma separated.
func formatRates(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = formatRate(x)
	}
	return strings.Join(parts, " · ")
}

// formatWait prints a wait to 10 µs, or to 10 ms from a second up.
func formatWait(d time.Duration) string {
	if d >= time.Second {
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(10 * time.Microsecond).String()
}

// formatWaitNs is formatWait of a number of nanoseconds.
func formatWaitNs(ns float64) string { return formatWait(time.Duration(ns)) }
