// The transcode queue: jobs by state (running, queued in the order they will run, then the ended
// ones), their progress and errors, and retry (GET /api/admin/transcode,
// POST /api/admin/transcode/<sha256>/retry).
import { h } from './dom.js'
import { api } from './api.js'
import { formatPercent } from './format.js'
import { toast } from './toast.js'
import { badge, field, fileLink, filterForm, pagedList, when } from './admin-kit.js'

const STATES = [['', 'All'], ['running', 'Running'], ['queued', 'Queued'], ['failed', 'Failed'], ['done', 'Done'], ['cancelled', 'Cancelled']]
const KIND = { done: 'ok', failed: 'bad', running: 'warn' }

export async function render (root) {
  const state = h('select', {}, STATES.map(([value, label]) => h('option', { value }, label)))
  const summary = h('p', { class: 'muted', id: 'transcode-summary' })
  const list = pagedList({
    label: 'Transcoding jobs',
    empty: 'No jobs.',
    load: async (offset) => {
      const page = await api(`/api/admin/transcode?limit=50&offset=${offset}${state.value ? '&state=' + state.value : ''}`)
      summary.textContent = (page.active ? 'Transcoding is on. ' : 'Transcoding is off here (disabled, or FFmpeg is missing). ') +
        (Object.entries(page.counts).map(([s, n]) => `${n} ${s}`).join(' · ') || 'No job yet.')
      return page
    },
    items: (page) => page.jobs,
    row: (j) => row(j, list)
  })
  const apply = () => list.reload().catch((e) => toast(e.message, { error: true }))
  state.addEventListener('change', apply)
  root.append(summary, filterForm([field('transcode-state', 'State', state)], apply, 'Show'), list.el)
  await list.reload()
}

function row (j, list) {
  const retry = async (e) => {
    e.currentTarget.disabled = true
    try {
      const out = await api(`/api/admin/transcode/${j.sha256}/retry`, { method: 'POST', json: {} })
      toast(`Transcode ${out.state} again`)
      await list.reload()
    } catch (err) {
      toast(err.message, { error: true })
      e.currentTarget.disabled = false
    }
  }
  return h('li', { class: 'admin-row', dataset: { sha256: j.sha256, state: j.state } },
    h('div', { class: 'admin-row-main' },
      h('p', { class: 'admin-row-title' }, fileLink(j.sha256), ' ', badge(j.state, KIND[j.state]),
        j.state === 'running' ? ` ${formatPercent((j.progress || 0) / 100)}` : null),
      h('p', { class: 'muted' }, `priority ${j.priority} · attempt${j.attempts === 1 ? '' : 's'} ${j.attempts} · queued `, when(j.created_at),
        j.finished_at ? [' · ended ', when(j.finished_at)] : null),
      j.error ? h('p', { class: 'error' }, j.error) : null),
    ['failed', 'done', 'cancelled'].includes(j.state)
      ? h('div', { class: 'admin-row-actions' },
        h('button', { type: 'button', class: 'btn small', 'aria-label': `Retry the transcode of ${j.sha256.slice(0, 12)}`, onclick: retry }, 'Retry'))
      : null)
}
