// Retention: the dry run (what a run now would remove, and why: GET /api/admin/cleanup) and
// "Run now" (POST /api/admin/cleanup), whose report replaces the dry run.
import { h } from './dom.js'
import { api } from './api.js'
import { formatBytes } from './format.js'
import { toast } from './toast.js'
import { age, ask, badge, fileLink, key, when } from './admin-kit.js'

const REASONS = { max_file_age: 'older than the maximum age', cleanup_age: 'not used for the cleanup age' }

export async function render (root) {
  const out = h('div', { id: 'retention-report' })
  const again = h('button', { type: 'button', class: 'btn' }, 'Dry run again')
  const run = h('button', { type: 'button', class: 'btn danger' }, 'Run now')
  const dry = async () => {
    out.replaceChildren(h('p', { class: 'muted' }, 'Looking…'))
    out.replaceChildren(report(await api('/api/admin/cleanup')))
  }
  again.addEventListener('click', () => dry().catch((e) => toast(e.message, { error: true })))
  run.addEventListener('click', async () => {
    const answer = await ask({
      title: 'Run retention now?',
      message: 'Every file the dry run lists is removed now, with the inactive users and the orphans.',
      confirm: 'Run now',
      danger: true
    })
    if (!answer) return
    run.disabled = true
    try {
      const done = await api('/api/admin/cleanup', { method: 'POST' })
      out.replaceChildren(report(done))
      toast(`Retention removed ${done.files.count} file${done.files.count === 1 ? '' : 's'}`)
    } catch (e) {
      toast(e.message, { error: true })
    } finally {
      run.disabled = false
    }
  })
  root.append(h('p', { class: 'admin-tools' }, again, ' ', run), out)
  await dry()
}

function report (r) {
  const f = r.files
  const s = r.storage || {}
  const orphans = ['orphan_blobs', 'orphan_chunks', 'temp_leftovers', 'stray']
    .map((k) => [k.replace('_', ' '), s[k] ? s[k].count : 0])
  return h('section', { class: 'panel', 'aria-labelledby': 'run-title', dataset: { dryRun: String(r.dry_run) } },
    h('h2', { id: 'run-title' }, r.dry_run ? 'What a run now would remove' : 'What this run removed'),
    h('p', { class: 'muted' }, `Rules: files unused for ${age(r.rules.cleanup_age)} or older than ${age(r.rules.max_file_age)}; ` +
      `users inactive for ${age(r.rules.inactive_user_age)}. `, r.dry_run ? 'Nothing was changed.' : ['Run at ', when(r.now), '.']),
    h('dl', { class: 'tiles' },
      tile('Files', `${f.count} (${formatBytes(f.bytes)})`),
      tile('Unused', f.by_reason.cleanup_age),
      tile('Too old', f.by_reason.max_file_age),
      tile('Inactive users', r.users.count),
      tile('Rows without bytes', s.missing_files || 0),
      ...orphans.map(([label, n]) => tile(label, n))),
    f.items.length
      ? h('ul', { class: 'admin-list', 'aria-label': r.dry_run ? 'Files a run would remove' : 'Files removed' }, f.items.map((e) =>
        h('li', { class: 'admin-row', dataset: { sha256: e.sha256 } },
          h('div', { class: 'admin-row-main' },
            h('p', { class: 'admin-row-title' }, fileLink(e.sha256), ' ', badge(e.reason)),
            h('p', { class: 'muted' }, `${formatBytes(e.size)} · ${REASONS[e.reason] || e.reason} · uploaded `, when(e.created_at), ' · last used ', when(e.last_use))))))
      : h('p', { class: 'muted' }, r.dry_run ? 'No file would be removed.' : 'No file was removed.'),
    r.users.items.length
      ? h('p', {}, 'Inactive users: ', r.users.items.map((u, i) => [i ? ', ' : '', key(typeof u === 'string' ? u : u.pubkey)]))
      : null)
}

function tile (label, value) {
  return h('div', { class: 'tile' }, h('dt', {}, label), h('dd', {}, String(value)))
}
