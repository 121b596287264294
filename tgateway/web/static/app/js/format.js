// Numbers as people read them. Sizes in SI units, like tgateway.web.pages.format_size.

export function formatBytes (n) {
  if (!Number.isFinite(n) || n < 0) return '–'
  if (n < 1000) return `${Math.round(n)} B`
  let value = n
  for (const unit of ['kB', 'MB', 'GB', 'TB', 'PB']) {
    value /= 1000
    if (value < 1000 || unit === 'PB') return value < 100 ? `${value.toFixed(1)} ${unit}` : `${Math.round(value)} ${unit}`
  }
}

export function formatSpeed (bytesPerSecond) {
  return Number.isFinite(bytesPerSecond) && bytesPerSecond > 0 ? `${formatBytes(bytesPerSecond)}/s` : '–'
}

// "45 s", "3 min 05 s", "2 h 10 min"; null for unknown
export function formatDuration (seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return null
  const s = Math.round(seconds)
  if (s < 60) return `${s} s`
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`
}

export function formatPercent (fraction) {
  return `${Math.floor(Math.max(0, Math.min(1, fraction)) * 100)} %`
}

export function formatDate (unixSeconds) {
  if (!unixSeconds) return ''
  return new Date(unixSeconds * 1000).toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit'
  })
}

export function shortKey (text, head = 10, tail = 6) {
  return text.length > head + tail + 1 ? `${text.slice(0, head)}…${text.slice(-tail)}` : text
}

// "14:05", or "14:05:30" with `seconds`: a time of today's charts
export function formatTime (unixSeconds, seconds = false) {
  return new Date(unixSeconds * 1000).toLocaleTimeString(undefined, {
    hour: '2-digit', minute: '2-digit', second: seconds ? '2-digit' : undefined
  })
}
