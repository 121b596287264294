// The geometry and words of a chart of a counter's growth per interval (GET /api/admin/history),
// without a DOM: the step area and line of the values, the top of the y axis, the time covered.
// Each value covers the time since the point before (the first: one interval), so it is drawn as
// a step over that time: a late point is a wide step, not a spike.

// The smallest 1, 2 or 5 times a power of ten at or above `v` (1 for nothing): the y axis' top.
export function niceCeil (v) {
  if (!(v > 0)) return 1
  const p = 10 ** Math.floor(Math.log10(v))
  for (const m of [1, 2, 5, 10]) {
    if (m * p >= v * (1 - 1e-9)) return m * p
  }
  return 10 * p
}

// "minute", "hour", "second", or "30 s": what one point covers, after "per".
export function perInterval (seconds) {
  const names = { 1: 'second', 60: 'minute', 3600: 'hour', 86400: 'day' }
  return names[seconds] || `${seconds} s`
}

// The step area and line of `values` (one per time in `times`, seconds) in a `width` x `height`
// box: { start, end, top, area, line } where `start`..`end` is the time covered and `top` the
// value at the top of the box. Null without points.
export function stepShape (values, times, interval, width, height) {
  if (!times.length) return null
  const start = times[0] - interval
  const end = times[times.length - 1]
  const top = niceCeil(Math.max(0, ...values))
  const x = (t) => round(((t - start) / Math.max(end - start, 1e-9)) * width)
  const y = (v) => round(height - (Math.max(0, v) / top) * height)
  const steps = []
  let from = start
  values.forEach((v, i) => {
    steps.push(`L${x(from)} ${y(v)}`, `L${x(times[i])} ${y(v)}`)
    from = times[i]
  })
  const line = 'M' + steps.join(' ').slice(1)
  const area = `M${x(start)} ${height} ${steps.join(' ')} L${x(end)} ${height} Z`
  return { start, end, top, area, line }
}

function round (n) {
  return Math.round(n * 100) / 100
}
