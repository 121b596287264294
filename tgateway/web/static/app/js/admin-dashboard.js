// The admin dashboard: the health of each component (scores 0-100 with their reasons, the
// alerts that are on: GET /api/admin/diagnostics), charts of uploads, bytes and announces over
// time (GET /api/admin/history, redrawn every interval while the page is open) and the gateway's
// numbers (GET /api/admin/stats).
import { h } from './dom.js'
import { api } from './api.js'
import { formatBytes } from './format.js'
import { badge, when } from './admin-kit.js'
import { chart } from './chart.js'
import { poll } from './poll.js'

const STATE = { ok: 'ok', degraded: 'warn', down: 'bad' }

export async function render (root) {
  const refresh = h('button', { type: 'button', class: 'btn', onclick: () => fill(root, refresh) }, 'Refresh')
  await fill(root, refresh)
}

async function fill (root, refresh) {
  refresh.disabled = true
  try {
    const [stats, health, past] = await Promise.all([api('/api/admin/stats'), diagnostics(), history()])
    root.replaceChildren(
      h('p', { class: 'admin-tools' }, refresh),
      healthSection(health, stats),
      past ? activity(past) : null,
      numbers(stats))
  } finally {
    refresh.disabled = false
  }
}

// null when this gateway has no health component (the route is a 404 there)
async function diagnostics () {
  return orNone('/api/admin/diagnostics')
}

async function history () {
  return orNone('/api/admin/history')
}

async function orNone (path) {
  try {
    return await api(path)
  } catch (e) {
    if (e.status === 404) return null
    throw e
  }
}

// The charts, redrawn from the history every interval (5 s to a minute) until the section
// leaves the page (Refresh draws a new one, or the view changes).
function activity (past) {
  const charts = h('div', { class: 'charts' })
  const section = h('section', { class: 'panel', 'aria-labelledby': 'activity-title', id: 'activity' },
    h('h2', { id: 'activity-title' }, 'Activity'),
    h('p', { class: 'muted' }, 'Counted since the gateway started; kept in memory, not across a restart.'),
    charts)
  const draw = (p) => charts.replaceChildren(...p.series.map((s) => chart(s, p.times, p.interval)))
  draw(past)
  const every = Math.min(60, Math.max(5, past.interval)) * 1000
  poll(async () => {
    if (!section.isConnected) return false
    const now = await history()
    if (!now || !section.isConnected) return false
    draw(now)
  }, every, { wait: true })
  return section
}

function healthSection (health, stats) {
  const section = h('section', { class: 'panel', 'aria-labelledby': 'health-title', id: 'health' },
    h('h2', { id: 'health-title' }, 'Health'))
  if (!health) {
    section.append(h('p', { class: 'muted' }, 'No health scores on this gateway; each component says:'),
      h('ul', { class: 'scores' }, Object.entries(stats.components).map(([name, s]) =>
        h('li', { class: 'score' }, h('span', { class: 'score-name' }, name), badge(s.status || 'running')))))
    return section
  }
  section.append(
    h('p', { class: 'overall' }, 'Overall: ', badge(health.status, STATE[health.status]),
      ' · checked ', when(health.time)),
    alerts(health.alerts),
    h('ul', { class: 'scores', 'aria-label': 'Scores' }, Object.entries(health.scores).map(([name, score]) => {
      const reasons = (health.reasons && health.reasons[name]) || []
      return h('li', { class: 'score', dataset: { component: name } },
        h('span', { class: 'score-name', id: `score-${name}` }, name),
        h('meter', { min: 0, max: 100, low: 50, high: 80, optimum: 100, value: score, 'aria-labelledby': `score-${name}` }),
        h('span', { class: 'score-value' }, String(score)),
        reasons.length ? h('p', { class: 'muted score-reasons' }, reasons.join('; ')) : null)
    })))
  return section
}

function alerts (list) {
  if (!list.length) return h('p', { class: 'muted', id: 'alerts' }, 'No alerts.')
  return h('ul', { class: 'alerts', id: 'alerts', 'aria-label': 'Alerts' }, list.map((a) =>
    h('li', { class: 'alert', dataset: { alert: a.name } }, h('strong', {}, a.name), ': ', a.message,
      h('span', { class: 'muted' }, ' since ', when(a.since)))))
}

function numbers (s) {
  const t = s.transcode || {}
  const reports = s.reports || {}
  const tiles = [
    ['Files', s.storage.files, null],
    ['Stored', formatBytes(s.storage.bytes), null],
    ['Free disk', s.storage.free_bytes === null || s.storage.free_bytes === undefined ? '–' : formatBytes(s.storage.free_bytes), null],
    ['Users', s.users.total, '/admin/users'],
    ['Banned', s.users.banned, '/admin/blocked'],
    ['Blocked files', s.blocked_files, '/admin/blocked'],
    ['Open reports', s.reports ? reports.open : '–', '/admin/reports'],
    ['Transcodes queued', (t.queued || 0) + (t.running || 0), '/admin/transcode'],
    ['Transcodes failed', t.failed || 0, '/admin/transcode']
  ]
  return h('section', { class: 'panel', 'aria-labelledby': 'numbers-title' },
    h('h2', { id: 'numbers-title' }, 'Gateway'),
    h('dl', { class: 'tiles', id: 'tiles' }, tiles.map(([label, value, href]) =>
      h('div', { class: 'tile', dataset: { tile: label } },
        h('dt', {}, href ? h('a', { href }, label) : label),
        h('dd', {}, String(value))))))
}
