// Read NIP-35 torrents and NIP-71 videos back from a relay as a client does, with nostr-tools:
// verifyEvent and validateEvent, the kind's class (regular / parameterized) and name from
// nostr-tools' kinds, then the tags read the way NIP-35 and NIP-71 (NIP-92 imeta) say.
// Usage: node nostr_media_read.mjs <relay-url> '<filter JSON>' [timeout-ms]
// Prints one JSON line: {"events": [{event, verified, valid, class, kind_name, torrent?, video?}]}
import { Relay, useWebSocketImplementation } from 'nostr-tools/relay'
import { verifyEvent, validateEvent } from 'nostr-tools/pure'
import * as kinds from 'nostr-tools/kinds'
import { matchFilter } from 'nostr-tools/filter'
import WebSocket from 'ws'

useWebSocketImplementation(WebSocket)
const [url, filterJson, timeoutArg] = process.argv.slice(2)
const filter = JSON.parse(filterJson)
const timeoutMs = Number(timeoutArg || 10000)

const relay = await Relay.connect(url, { verifyEvent: () => true })
const events = []
await new Promise((resolve) => {
  const timer = setTimeout(resolve, timeoutMs)
  const sub = relay.subscribe([filter], {
    onevent (event) { events.push(event) },
    oneose () { clearTimeout(timer); sub.close(); resolve() }
  })
})
relay.close()

const names = { [kinds.Torrent]: 'Torrent', [kinds.NormalVideo]: 'NormalVideo', [kinds.ShortVideo]: 'ShortVideo', 34235: 'AddressableNormalVideo', 34236: 'AddressableShortVideo' }
const values = (e, name) => e.tags.filter((t) => t[0] === name).map((t) => t[1])
const first = (e, name) => values(e, name)[0]

function torrent (e) {
  // NIP-35: x is the v1 info-hash of the magnet link; i tcat:<category path>
  const magnet = first(e, 'magnet') || ''
  const params = new URLSearchParams(magnet.replace(/^magnet:\?/, ''))
  return {
    title: first(e, 'title'),
    info_hash: first(e, 'x'),
    magnet_btih: (params.get('xt') || '').replace('urn:btih:', '').toLowerCase(),
    files: e.tags.filter((t) => t[0] === 'file').map((t) => [t[1], Number(t[2])]),
    trackers: values(e, 'tracker'),
    categories: values(e, 'i').filter((v) => v.startsWith('tcat:')).map((v) => v.slice(5).split(',')),
    topics: values(e, 't')
  }
}

function video (e) {
  // NIP-71: imeta tags (NIP-92: "key value" entries, keys may repeat) are the variants
  const variants = e.tags.filter((t) => t[0] === 'imeta').map((t) => {
    const v = {}
    for (const entry of t.slice(1)) {
      const i = entry.indexOf(' ')
      const key = entry.slice(0, i)
      const value = entry.slice(i + 1)
      if (key === 'fallback') (v.fallback = v.fallback || []).push(value)
      else v[key] = value
    }
    return v
  })
  return { d: first(e, 'd'), title: first(e, 'title'), published_at: first(e, 'published_at'), variants }
}

const out = events.map((e) => {
  const copy = JSON.parse(JSON.stringify(e))
  const item = {
    event: e,
    verified: verifyEvent(copy),
    valid: validateEvent(e),
    matches: matchFilter(filter, e),
    class: kinds.classifyKind(e.kind),
    kind_name: names[e.kind] || null
  }
  if (e.kind === kinds.Torrent) item.torrent = torrent(e)
  else if (item.kind_name) item.video = video(e)
  return item
})
const text = JSON.stringify({ events: out })
console.log(text.replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0')))
process.exit(0)
