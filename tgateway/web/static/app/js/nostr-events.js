// The NIP-35 (torrent) and NIP-71 (video) events the gateway published for a file, with each
// relay's answer (GET /api/files/<sha256>/announcements), and links out: a nostr: URI for the
// reader's own client, and njump.
import { $, h, show } from './dom.js'
import { api } from './api.js'
import { config } from './config.js'
import { formatDate } from './format.js'
import { loadNostrTools } from './vendor.js'
import { poll } from './poll.js'

const KINDS = {
  2003: 'NIP-35 torrent',
  21: 'NIP-71 video',
  22: 'NIP-71 short video',
  34235: 'NIP-71 video',
  34236: 'NIP-71 short video'
}
const STATUS = { accepted: 'accepted', pending: 'pending', rejected: 'rejected', failed: 'failed' }

let identity = null

export function showNostrEvents (file) {
  const section = $('#nostr')
  let stop = null
  const refresh = async () => {
    const { announcements } = await api(`/api/files/${file.sha256}/announcements`, { auth: false })
    if (!announcements.length) {
      show(section, false)
      return false
    }
    await render(announcements)
    show(section)
    return announcements.some((a) => a.status === 'pending')
  }
  stop = poll(refresh, 4000)
  // the owner's "Announce again" asks for a fresh look
  document.addEventListener('tg:announced', () => {
    if (stop) stop()
    stop = poll(refresh, 4000)
  })
}

async function render (rows) {
  const events = new Map()
  for (const row of rows) {
    if (!events.has(row.event_id)) events.set(row.event_id, [])
    events.get(row.event_id).push(row)
  }
  let NT = null
  try {
    NT = await loadNostrTools()
    if (!identity) identity = await api('/api/nostr/identity', { auth: false })
  } catch {}
  const list = h('ul', { class: 'events' })
  for (const [id, deliveries] of events) {
    const kind = deliveries[0].kind
    const accepted = deliveries.filter((d) => d.status === 'accepted').map((d) => d.relay)
    let nevent = null
    if (NT) nevent = NT.nip19.neventEncode({ id, relays: accepted.slice(0, 2), author: identity && identity.pubkey, kind })
    list.append(h('li', { class: 'event', dataset: { eventId: id } },
      h('div', { class: 'event-head' },
        h('strong', null, KINDS[kind] || `kind ${kind}`),
        h('code', { class: 'hash', title: id }, `${id.slice(0, 16)}…`),
        h('span', { class: 'muted' }, formatDate(deliveries[0].queued_at)),
        nevent ? h('a', { href: `nostr:${nevent}` }, 'Open in a Nostr app') : null,
        nevent ? h('a', { href: config.nostr.njump + nevent, target: '_blank', rel: 'noopener noreferrer' }, 'njump') : null),
      h('ul', { class: 'relays' }, deliveries.map((d) =>
        h('li', { class: `relay relay-${STATUS[d.status] || 'other'}`, dataset: { relay: d.relay, status: d.status } },
          h('span', { class: 'badge' }, d.status), ' ', h('span', { class: 'relay-url' }, d.relay),
          d.message ? h('span', { class: 'muted' }, ` – ${d.message}`) : null)))))
  }
  $('#nostr-events').replaceChildren(list)
}
