package web

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/esync/queue"
)

// throughputChart draws the last hour as 60 bars, one per minute: tasks
// that finished DONE in green with those that ended FAILED stacked on top
// in red; a minute not counted yet is a grey column. It is inline SVG built
// from numbers only.
func throughputChart(h finishedHour) template.HTML {
	finished, now := h.counts, h.now
	const bars, barW, gap, height, top = 60, 9, 1, 100, 14
	start := now.Truncate(time.Minute).Add(-(bars - 1) * time.Minute)
	done, failed := make([]int, bars), make([]int, bars)
	peak := 1
	for _, c := range finished {
		i := int(c.Minute.Sub(start) / time.Minute)
		if i < 0 || i >= bars {
			continue
		}
		switch c.State {
		case queue.TaskDone:
			done[i] += c.Count
		case queue.TaskFailed:
			failed[i] += c.Count
		}
	}
	for i := range bars {
		peak = max(peak, done[i]+failed[i])
	}
	width := bars * (barW + gap)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" role="img" aria-label="tasks finished per minute over the last hour" viewBox="0 0 %d %d" width="%d" height="%d">`,
		width, height+top+16, width, height+top+16)
	fmt.Fprintf(&b, `<text x="0" y="10" class="axis">%d/min</text>`, peak)
	fmt.Fprintf(&b, `<line x1="0" y1="%d" x2="%d" y2="%d" class="base"/>`, top+height, width, top+height)
	for i := range bars {
		x := i * (barW + gap)
		hDone := done[i] * height / peak
		hFailed := failed[i] * height / peak
		if done[i] > 0 && hDone == 0 {
			hDone = 1
		}
		if failed[i] > 0 && hFailed == 0 {
			hFailed = 1
		}
		minute := start.Add(time.Duration(i) * time.Minute)
		at := minute.UTC().Format("15:04")
		if h.unknown[minute] {
			fmt.Fprintf(&b, `<g><title>%s UTC: not counted yet</title><rect x="%d" y="%d" width="%d" height="%d" class="uncounted"/></g>`,
				at, x, top, barW, height)
			continue
		}
		fmt.Fprintf(&b, `<g><title>%s UTC: %d done, %d failed</title>`, at, done[i], failed[i])
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" class="done"/>`, x, top+height-hDone, barW, hDone)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" class="failed"/></g>`, x, top+height-hDone-hFailed, barW, hFailed)
	}
	fmt.Fprintf(&b, `<text x="0" y="%d" class="axis">%s</text>`, top+height+14, start.UTC().Format("15:04"))
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="axis" text-anchor="end">now</text>`, width, top+height+14)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
