// "My files": storage used against the quota, the signed-in user's files with search and sort,
// each with its Nostr announcement and (for videos) transcode status, and delete.
import { $, h, show } from './dom.js'
import { api } from './api.js'
import { session } from './session.js'
import { formatBytes, formatDate, formatPercent } from './format.js'
import { describeTranscode } from './owner.js'
import { toast } from './toast.js'

const PAGE = 500
const STATUS_PARALLEL = 4

let files = []
let nextCursor = null
let generation = 0

const SORTS = {
  new: (a, b) => b.uploaded_at - a.uploaded_at,
  old: (a, b) => a.uploaded_at - b.uploaded_at,
  name: (a, b) => label(a).localeCompare(label(b)),
  big: (a, b) => b.size - a.size,
  small: (a, b) => a.size - b.size
}

const label = (f) => f.title || f.name

export function start () {
  $('#me-search').addEventListener('input', render)
  $('#me-sort').addEventListener('change', render)
  $('#me-filters').addEventListener('submit', (e) => e.preventDefault())
  $('#me-more').addEventListener('click', () => loadPage(generation))
  session.onChange(load)
  load()
}

async function load () {
  const mine = ++generation
  const signedIn = Boolean(session.get())
  show($('#me-signed-out'), !signedIn)
  show($('#me'), signedIn)
  files = []
  nextCursor = null
  $('#me-files').replaceChildren()
  if (!signedIn) return
  try {
    await Promise.all([stats(), loadPage(mine)])
  } catch (e) {
    if (mine === generation) toast(e.message, { error: true })
  }
}

async function stats () {
  const s = await api('/api/users/me/stats')
  const used = s.quota ? s.bytes_used / s.quota : 0
  $('#quota-text').textContent = `${formatBytes(s.bytes_used)} of ${formatBytes(s.quota)} used · ` +
    `${s.files} file${s.files === 1 ? '' : 's'} · ${formatBytes(s.bytes_remaining)} left`
  const bar = $('#quota-bar')
  bar.setAttribute('aria-valuenow', String(Math.round(used * 100)))
  bar.setAttribute('aria-valuetext', `${formatPercent(used)} used`)
  bar.classList.toggle('bar-high', used > 0.9)
  bar.querySelector('.bar-fill').style.width = `${Math.min(100, used * 100)}%`
}

async function loadPage (mine) {
  const query = nextCursor ? `cursor=${encodeURIComponent(nextCursor)}` : 'offset=0'
  const page = await api(`/api/users/me/files?limit=${PAGE}&${query}`)
  if (mine !== generation) return
  files = files.concat(page.files)
  nextCursor = page.next_cursor
  show($('#me-more'), Boolean(nextCursor))
  render()
}

function render () {
  const q = $('#me-search').value.trim().toLowerCase()
  const shown = files
    .filter((f) => !q || [f.name, f.title || '', f.sha256, f.mime_type].some((s) => s.toLowerCase().includes(q)))
    .sort(SORTS[$('#me-sort').value] || SORTS.new)
  $('#me-count').textContent = q
    ? `${shown.length} of ${files.length} files match`
    : `${files.length} file${files.length === 1 ? '' : 's'}${nextCursor ? ' loaded' : ''}`
  const list = $('#me-files')
  list.replaceChildren(...shown.map(row))
  statuses(shown)
}

const rows = new WeakMap()

function row (f) {
  if (rows.has(f)) return rows.get(f)
  const nostr = h('span', { class: 'badge', dataset: { status: 'nostr' } }, 'Nostr …')
  const transcode = f.mime_type.startsWith('video/') ? h('span', { class: 'badge', dataset: { status: 'transcode' } }, 'Transcode …') : null
  const el = h('li', { class: 'file-row', dataset: { sha256: f.sha256 } },
    h('div', { class: 'file-row-main' },
      h('a', { class: 'file-row-name', href: `/f/${f.sha256}` }, label(f)),
      h('p', { class: 'muted' }, `${formatBytes(f.size)} · ${f.mime_type} · ${formatDate(f.uploaded_at)}`),
      h('p', { class: 'badges' }, nostr, transcode)),
    h('div', { class: 'file-row-actions' },
      h('a', { class: 'btn small', href: f.urls.download, download: f.name, 'aria-label': `Download ${label(f)}` }, 'Download'),
      h('button', { type: 'button', class: 'btn small danger', 'aria-label': `Delete ${label(f)}`, onclick: () => remove(f) }, 'Delete')))
  el.badges = { nostr, transcode }
  rows.set(f, el)
  return el
}

const statusDone = new WeakSet()

// announcement and transcode status of the rows on screen, a few requests at a time
async function statuses (shown) {
  const todo = shown.filter((f) => !statusDone.has(f))
  todo.forEach((f) => statusDone.add(f))
  const worker = async () => {
    while (todo.length) {
      const f = todo.shift()
      const { nostr, transcode } = rows.get(f).badges
      try {
        const { announcements } = await api(`/api/files/${f.sha256}/announcements`)
        const accepted = new Set(announcements.filter((a) => a.status === 'accepted').map((a) => a.relay))
        const relays = new Set(announcements.map((a) => a.relay))
        const pending = announcements.some((a) => a.status === 'pending')
        nostr.textContent = !announcements.length
          ? 'Not announced'
          : `Nostr: ${accepted.size}/${relays.size} relays${pending ? ' (sending)' : ''}`
        nostr.classList.toggle('badge-ok', accepted.size > 0)
      } catch (e) {
        nostr.textContent = e.code === 'nostr_unavailable' ? 'Nostr off' : 'Nostr: ?'
      }
      if (transcode) {
        try {
          const s = await api(`/api/users/me/files/${f.sha256}/transcoding-status`)
          transcode.textContent = describeTranscode(s) || 'Not transcoded'
          transcode.classList.toggle('badge-ok', s.state === 'done')
          transcode.classList.toggle('badge-bad', s.state === 'failed')
        } catch {
          transcode.textContent = 'Transcode: ?'
        }
      }
    }
  }
  await Promise.all(Array.from({ length: STATUS_PARALLEL }, worker))
}

async function remove (f) {
  if (!confirm(`Delete ${label(f)}?`)) return
  try {
    const r = await api(`/api/users/me/files/${f.sha256}`, { method: 'DELETE' })
    files = files.filter((x) => x !== f)
    render()
    stats().catch(() => {})
    toast(r.file_deleted ? `${label(f)} deleted` : `${label(f)} removed from your files (others still hold it)`)
  } catch (e) {
    toast(e.message, { error: true })
  }
}
