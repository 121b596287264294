// The audit log: every admin action, newest first, with who did it, on what, and the detail
// (GET /api/admin/audit?target=).
import { h } from './dom.js'
import { api } from './api.js'
import { toast } from './toast.js'
import { badge, field, filterForm, key, pagedList, when } from './admin-kit.js'

export async function render (root) {
  const target = h('input', { type: 'search', placeholder: 'a SHA-256, a key or a report id', autocomplete: 'off', spellcheck: 'false' })
  const list = pagedList({
    label: 'Audit log',
    empty: 'No admin action yet.',
    load: (offset) => api(`/api/admin/audit?limit=50&offset=${offset}&target=${encodeURIComponent(target.value.trim())}`),
    items: (page) => page.entries,
    row: (e) => h('li', { class: 'admin-row', dataset: { action: e.action, target: e.target } },
      h('div', { class: 'admin-row-main' },
        h('p', { class: 'admin-row-title' }, badge(e.action), ' ', h('code', { class: 'hash', title: e.target }, e.target)),
        h('p', { class: 'muted' }, when(e.at), ' by ', key(e.admin)),
        e.detail ? h('p', { class: 'audit-detail' }, typeof e.detail === 'string' ? e.detail : JSON.stringify(e.detail)) : null))
  })
  root.append(filterForm([field('audit-target', 'Target', target)],
    () => list.reload().catch((e) => toast(e.message, { error: true })), 'Filter'), list.el)
  await list.reload()
}
