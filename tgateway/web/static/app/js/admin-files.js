// Files: search every stored file (name, title, SHA-256, info-hash or owner key) and delete one
// with a reason: it is tombstoned, its bytes and info-hash refused everywhere from then on
// (GET /api/admin/files?q=, DELETE /api/admin/files/<sha256>).
import { h } from './dom.js'
import { api } from './api.js'
import { formatBytes } from './format.js'
import { toast } from './toast.js'
import { ask, field, fileLink, filterForm, key, pagedList, when } from './admin-kit.js'

export async function render (root) {
  const q = h('input', { type: 'search', placeholder: 'Name, title, SHA-256, info-hash or owner key', autocomplete: 'off' })
  const list = pagedList({
    label: 'Files',
    empty: 'No files match.',
    load: (offset) => api(`/api/admin/files?limit=50&offset=${offset}&q=${encodeURIComponent(q.value.trim())}`),
    items: (page) => page.files,
    row: (f) => row(f, list)
  })
  root.append(filterForm([field('files-q', 'Search files', q)],
    () => list.reload().catch((e) => toast(e.message, { error: true }))), list.el)
  await list.reload()
}

function row (f, list) {
  const owners = f.owners || []
  const titled = owners.find((o) => o.title)
  const name = titled ? titled.title : f.name
  const li = h('li', { class: 'admin-row', dataset: { sha256: f.sha256 } },
    h('div', { class: 'admin-row-main' },
      h('p', { class: 'admin-row-title' }, h('a', { href: `/f/${f.sha256}` }, name)),
      h('p', { class: 'muted' }, `${formatBytes(f.size)} · ${f.mime_type} · `, when(f.created_at)),
      h('p', { class: 'muted' }, 'SHA-256 ', fileLink(f.sha256), ' · ',
        owners.length ? [`${owners.length} owner${owners.length === 1 ? '' : 's'}: `, owners.slice(0, 3).map((o, i) => [i ? ', ' : '', key(o.pubkey)])] : 'no owner')),
    h('div', { class: 'admin-row-actions' },
      h('a', { class: 'btn small', href: f.urls.download, download: f.name, 'aria-label': `Download ${name}` }, 'Download'),
      h('button', { type: 'button', class: 'btn small danger', 'aria-label': `Delete ${name}`, onclick: () => remove(f, name, li, list) }, 'Delete')))
  return li
}

async function remove (f, name, li, list) {
  const answer = await ask({
    title: `Delete ${name}?`,
    message: 'The file is deleted for every owner and tombstoned: its bytes and its info-hash are refused from now on, on every face of the gateway, and its Nostr events are retracted.',
    confirm: 'Delete',
    danger: true,
    reason: true
  })
  if (!answer) return
  try {
    const out = await api(`/api/admin/files/${f.sha256}`, { method: 'DELETE', json: { reason: answer.reason } })
    const next = li.nextElementSibling || li.previousElementSibling
    li.remove()
    list.removed()
    if (next) next.querySelector('button, a')?.focus()
    toast(`${name} deleted and blocked${out.reports_closed ? `; ${out.reports_closed} report${out.reports_closed === 1 ? '' : 's'} closed` : ''}`)
  } catch (err) {
    toast(err.message, { error: true })
  }
}
