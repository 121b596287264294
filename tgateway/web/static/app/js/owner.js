// What the file's owner can do on its page: see the transcode (with its error), announce it
// again on Nostr, delete it.
import { $, show } from './dom.js'
import { api } from './api.js'
import { session } from './session.js'
import { formatPercent } from './format.js'
import { toast } from './toast.js'

export function setupOwner (file) {
  const section = $('#owner')
  const check = async () => {
    show(section, false)
    if (!session.get()) return
    let mine
    try {
      mine = await api(`/api/files/${file.sha256}/ownership`)
    } catch {
      return
    }
    if (!mine.owner) return
    show(section)
    if ((file.mime_type || '').startsWith('video/')) transcodeStatus(file)
  }
  // the player reads the public status as the transcode goes on
  document.addEventListener('tg:transcode', ({ detail }) => {
    if (section.hidden) return
    if (detail.state === 'failed') transcodeStatus(file) // the owner's route has the error
    else $('#owner-transcode').textContent = describeTranscode(detail)
  })
  session.onChange(check)
  check()
  $('#owner-announce').addEventListener('click', async (e) => {
    const button = e.currentTarget
    button.disabled = true
    try {
      const r = await api(`/api/files/${file.sha256}/announce`, { method: 'POST' })
      toast(`Announced again to ${r.announcements.length} relay${r.announcements.length === 1 ? '' : 's'}`)
      document.dispatchEvent(new CustomEvent('tg:announced'))
    } catch (err) {
      toast(err.message, { error: true })
    } finally {
      button.disabled = false
    }
  })
  $('#owner-delete').addEventListener('click', async () => {
    if (!confirm(`Delete ${file.name} from your files?`)) return
    try {
      const r = await api(`/api/users/me/files/${file.sha256}`, { method: 'DELETE' })
      toast(r.file_deleted ? 'Deleted' : 'Removed from your files (others still hold it)')
      setTimeout(() => { location.href = '/me' }, 800)
    } catch (err) {
      toast(err.message, { error: true })
    }
  })
}

async function transcodeStatus (file) {
  const el = $('#owner-transcode')
  try {
    const s = await api(`/api/users/me/files/${file.sha256}/transcoding-status`)
    el.textContent = describeTranscode(s)
  } catch (err) {
    el.textContent = err.message
  }
}

export function describeTranscode (s) {
  switch (s.state) {
    case 'done': return `Streams ready: ${s.profiles.map((p) => p.name).join(', ')}`
    case 'running': return `Transcoding: ${formatPercent((s.progress || 0) / 100)}`
    case 'queued': return 'Transcode queued'
    case 'failed': return `Transcode failed: ${s.error || 'no reason given'}`
    case 'not_queued': return 'Not transcoded'
    default: return ''
  }
}
