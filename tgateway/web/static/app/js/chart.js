// A chart of one series of GET /api/admin/history: what a counter grew by over each interval,
// as an inline SVG step area with its axes' labels, a title and a summary in words (the total
// over the time shown, the last interval's value, the parts) that is also the SVG's name.
import { h } from './dom.js'
import { formatBytes, formatDuration, formatTime } from './format.js'
import { perInterval, stepShape } from './chart-shape.js'

const W = 600
const H = 120

export function chart (series, times, interval) {
  const id = `chart-${series.name}`
  const amount = series.unit === 'bytes' ? formatBytes : (n) => String(Math.round(n))
  const per = perInterval(interval)
  const title = `${series.title} per ${per}`
  const shape = stepShape(series.values, times, interval, W, H)
  const summary = shape
    ? `${amount(series.total)} over the last ${formatDuration(shape.end - shape.start)}; ` +
      `${amount(series.values[series.values.length - 1])} in the last ${per}`
    : `No point yet: the first comes ${formatDuration(interval)} after the gateway started.`
  const parts = Object.entries(series.parts).filter(([name, n]) => name && n > 0)
  return h('figure', {
    class: 'chart', id, dataset: { series: series.name, total: series.total, points: times.length }
  },
  h('figcaption', {},
    h('span', { class: 'chart-title', id: `${id}-title` }, title),
    h('span', { class: 'chart-summary muted', id: `${id}-summary` }, summary)),
  h('div', { class: 'chart-plot' },
    h('div', { class: 'chart-y', 'aria-hidden': 'true' },
      h('span', {}, amount(shape ? shape.top : 1)), h('span', {}, amount(0))),
    h('svg:svg', {
      viewBox: `0 0 ${W} ${H}`,
      preserveAspectRatio: 'none',
      role: 'img',
      'aria-labelledby': `${id}-title ${id}-summary`
    },
    h('svg:title', {}, title),
    h('svg:path', { class: 'chart-grid', d: `M0 ${H / 2} H${W} M0 ${H} H${W}`, 'vector-effect': 'non-scaling-stroke' }),
    shape ? h('svg:path', { class: 'chart-area', d: shape.area }) : null,
    shape ? h('svg:path', { class: 'chart-line', d: shape.line, 'vector-effect': 'non-scaling-stroke' }) : null),
    shape
      ? h('div', { class: 'chart-x' }, stamp(shape.start, interval), stamp(shape.end, interval))
      : null),
  series.by && parts.length
    ? h('p', { class: 'chart-parts muted' }, parts.map(([name, n]) => `${name} ${amount(n)}`).join(' · '))
    : null)
}

function stamp (t, interval) {
  return h('time', { datetime: new Date(t * 1000).toISOString() }, formatTime(t, interval < 60))
}
