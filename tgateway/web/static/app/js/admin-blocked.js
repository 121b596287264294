// The block list: tombstoned files (GET /api/admin/files?blocked=true) and banned keys
// (GET /api/admin/users?banned=true, unban from here as from Users).
import { h } from './dom.js'
import { api } from './api.js'
import { key, pagedList, when } from './admin-kit.js'
import { row as userRow } from './admin-users.js'

export async function render (root) {
  const files = pagedList({
    label: 'Tombstoned files',
    empty: 'No file is blocked.',
    load: (offset) => api(`/api/admin/files?blocked=true&limit=50&offset=${offset}`),
    items: (page) => page.blocked,
    row: (b) => h('li', { class: 'admin-row', dataset: { sha256: b.sha256 } },
      h('div', { class: 'admin-row-main' },
        h('p', { class: 'admin-row-title' }, h('code', { class: 'hash' }, b.sha256)),
        h('p', { class: 'muted' }, 'info-hash ', h('code', { class: 'hash' }, b.info_hash || '–')),
        h('p', {}, b.reason ? ['Reason: ', h('span', { class: 'reason' }, b.reason)] : h('span', { class: 'muted' }, 'No reason given.')),
        h('p', { class: 'muted' }, 'Blocked by ', key(b.blocked_by), ' · ', when(b.blocked_at))))
  })
  const users = pagedList({
    label: 'Banned keys',
    empty: 'No key is banned.',
    load: (offset) => api(`/api/admin/users?banned=true&limit=50&offset=${offset}`),
    items: (page) => page.users,
    row: userRow
  })
  root.append(
    h('section', { class: 'panel', 'aria-labelledby': 'tomb-title' },
      h('h2', { id: 'tomb-title' }, 'Tombstoned files'),
      h('p', { class: 'muted' }, 'Deleted by an admin: their bytes and info-hashes are refused by every upload, the tracker, the DHT and the peer.'),
      files.el),
    h('section', { class: 'panel', 'aria-labelledby': 'bans-title' },
      h('h2', { id: 'bans-title' }, 'Banned keys'),
      users.el))
  await Promise.all([files.reload(), users.reload()])
}
