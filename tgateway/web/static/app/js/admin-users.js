// Users: who holds files, their usage against their quota, their own storage limit, ban and
// unban (GET /api/admin/users, PUT /api/admin/users/<pubkey>).
import { h } from './dom.js'
import { api } from './api.js'
import { formatBytes, formatPercent, shortKey } from './format.js'
import { toast } from './toast.js'
import { ask, badge, exactSize, field, filterForm, key, pagedList } from './admin-kit.js'

export async function render (root) {
  const q = h('input', { type: 'search', placeholder: 'hex, e.g. 3f2a', autocomplete: 'off', spellcheck: 'false' })
  const banned = h('input', { type: 'checkbox' })
  const list = pagedList({
    label: 'Users',
    empty: 'No users match.',
    load: (offset) => api(`/api/admin/users?limit=50&offset=${offset}&q=${encodeURIComponent(q.value.trim().toLowerCase())}` +
      (banned.checked ? '&banned=true' : '')),
    items: (page) => page.users,
    row
  })
  const apply = () => list.reload().catch((e) => toast(e.message, { error: true }))
  banned.addEventListener('change', apply)
  root.append(
    filterForm([field('users-q', 'Key starts with', q),
      h('label', { class: 'check' }, banned, 'Banned only')], apply),
    list.el)
  await list.reload()
}

export function row (u) {
  const li = h('li', { class: 'admin-row', dataset: { pubkey: u.pubkey } })
  fillRow(li, u)
  return li
}

function fillRow (li, u) {
  const short = shortKey(u.pubkey, 12, 6)
  const used = u.quota ? u.bytes_used / u.quota : 0
  const limit = h('input', { type: 'text', value: exactSize(u.storage_limit), placeholder: `default (${exactSize(u.quota)})`, size: 10 })
  const limitId = `limit-${u.pubkey}`
  const limitForm = h('form', { class: 'row limit' },
    h('label', { for: limitId, class: 'sr-only' }, `Storage limit of ${short}`), limit,
    h('button', { class: 'btn small', 'aria-label': `Save the storage limit of ${short}` }, 'Save'))
  limit.id = limitId
  limitForm.addEventListener('submit', async (e) => {
    e.preventDefault()
    const value = limit.value.trim()
    try {
      const out = await api(`/api/admin/users/${u.pubkey}`, { method: 'PUT', json: { storage_limit: value === '' ? null : (/^\d+$/.test(value) ? Number(value) : value) } })
      fillRow(li, { ...u, ...out })
      toast(`Storage limit of ${short}: ${out.storage_limit === null ? 'the default' : formatBytes(out.storage_limit)}`)
    } catch (err) {
      toast(err.message, { error: true })
    }
  })
  const action = u.admin
    ? null
    : u.banned
      ? h('button', { type: 'button', class: 'btn small', dataset: { ban: 'false' }, 'aria-label': `Unban ${short}`, onclick: () => setBan(li, u, false) }, 'Unban')
      : h('button', { type: 'button', class: 'btn small danger', dataset: { ban: 'true' }, 'aria-label': `Ban ${short}`, onclick: () => setBan(li, u, true) }, 'Ban')
  const fill = h('span', { class: 'bar-fill' })
  fill.style.width = `${Math.min(100, used * 100)}%` // CSSOM: the CSP allows no style attribute
  li.classList.toggle('is-banned', Boolean(u.banned))
  li.replaceChildren(
    h('div', { class: 'admin-row-main' },
      h('p', { class: 'admin-row-title' }, key(u.pubkey), ' ',
        u.admin ? badge('admin', 'ok') : null, u.banned ? badge('banned', 'bad') : null),
      h('p', { class: 'muted' }, `${u.files} file${u.files === 1 ? '' : 's'} · ${formatBytes(u.bytes_used)} of ${formatBytes(u.quota)}` +
        (u.storage_limit === null || u.storage_limit === undefined ? '' : ' (own limit)')),
      h('div', { class: 'bar' + (used > 0.9 ? ' bar-high' : ''), role: 'progressbar', 'aria-label': `Usage of ${short}`, 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.round(used * 100), 'aria-valuetext': `${formatPercent(used)} used` },
        fill)),
    h('div', { class: 'admin-row-actions' }, limitForm, action))
}

async function setBan (li, u, banned) {
  const short = shortKey(u.pubkey, 12, 6)
  const answer = banned
    ? await ask({
      title: `Ban ${short}?`,
      message: 'This key can no longer sign in, upload, mirror or publish through the gateway, and its sessions stop working. Lifting the ban restores all of it.',
      confirm: 'Ban',
      danger: true,
      deleteFiles: true
    })
    : { deleteFiles: false }
  if (!answer) return
  try {
    const out = await api(`/api/admin/users/${u.pubkey}`, { method: 'PUT', json: banned ? { banned: true, delete_files: answer.deleteFiles } : { banned: false } })
    fillRow(li, { ...u, ...out })
    li.querySelector('[data-ban]').focus() // the button that replaced the one pressed
    toast(banned
      ? `${short} banned${out.files_deleted ? `; ${out.files_deleted} file${out.files_deleted === 1 ? '' : 's'} deleted` : ''}`
      : `${short} may use the gateway again`)
  } catch (err) {
    toast(err.message, { error: true })
  }
}
