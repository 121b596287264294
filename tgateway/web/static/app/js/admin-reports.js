// The reports queue (BUD-09): each report with its blobs (stored, blocked, their uploaders) and
// what to do: dismiss, delete the blobs, or delete them and ban their uploaders
// (GET /api/admin/reports?status=, POST /api/admin/reports/<id>).
import { h } from './dom.js'
import { api } from './api.js'
import { toast } from './toast.js'
import { ask, badge, field, fileLink, filterForm, key, pagedList, when } from './admin-kit.js'

const STATUSES = [['open', 'Open'], ['dismissed', 'Dismissed'], ['actioned', 'Acted on'], ['all', 'All']]

export async function render (root) {
  const status = h('select', {}, STATUSES.map(([value, label]) => h('option', { value }, label)))
  const list = pagedList({
    label: 'Reports',
    empty: 'No reports.',
    load: (offset) => api(`/api/admin/reports?limit=50&offset=${offset}&status=${status.value}`),
    items: (page) => page.reports,
    row: (r) => row(r, list)
  })
  const apply = () => list.reload().catch((e) => toast(e.message, { error: true }))
  status.addEventListener('change', apply)
  root.append(filterForm([field('reports-status', 'Status', status)], apply, 'Show'), list.el)
  await list.reload()
}

function row (r, list) {
  const open = r.status === 'open'
  const act = (action) => decide(r, action, list)
  return h('li', { class: 'admin-row report', dataset: { report: r.id } },
    h('div', { class: 'admin-row-main' },
      h('p', { class: 'admin-row-title' }, 'Reported by ', key(r.reporter), ' · ', when(r.received_at || r.created_at), ' ',
        badge(r.status, open ? 'warn' : null)),
      r.content ? h('blockquote', { class: 'report-content' }, r.content) : h('p', { class: 'muted' }, 'No comment.'),
      h('ul', { class: 'report-blobs', 'aria-label': 'Reported files' }, r.blobs.map((b) =>
        h('li', {}, b.stored ? fileLink(b.sha256) : h('code', { class: 'hash', title: b.sha256 }, b.sha256.slice(0, 16) + '…'),
          ' ', b.type ? badge(b.type) : null, ' ',
          b.blocked ? badge('blocked', 'bad') : b.stored ? badge('stored') : badge('gone'),
          b.uploaders.length ? [' uploaded by ', b.uploaders.map((u, i) => [i ? ', ' : '', key(u)])] : null)))),
    open
      ? h('div', { class: 'admin-row-actions' },
        h('button', { type: 'button', class: 'btn small', onclick: () => act('dismiss') }, 'Dismiss'),
        h('button', { type: 'button', class: 'btn small danger', onclick: () => act('delete') }, 'Delete files'),
        h('button', { type: 'button', class: 'btn small danger', onclick: () => act('ban') }, 'Delete and ban'))
      : null)
}

const ASK = {
  delete: {
    title: 'Delete the reported files?',
    message: 'Every reported file is deleted and tombstoned, as a delete from the Files page.',
    confirm: 'Delete',
    danger: true
  },
  ban: {
    title: 'Delete the files and ban their uploaders?',
    message: 'Every reported file is deleted and tombstoned, and every key that uploaded one is banned.',
    confirm: 'Delete and ban',
    danger: true,
    deleteFiles: true
  }
}

async function decide (r, action, list) {
  const answer = ASK[action] ? await ask(ASK[action]) : { deleteFiles: false }
  if (!answer) return
  try {
    await api(`/api/admin/reports/${r.id}`, { method: 'POST', json: action === 'ban' ? { action, delete_files: answer.deleteFiles } : { action } })
    toast(action === 'dismiss' ? 'Report dismissed' : action === 'delete' ? 'Reported files deleted' : 'Reported files deleted, uploaders banned')
    await list.reload()
  } catch (err) {
    toast(err.message, { error: true })
  }
}
