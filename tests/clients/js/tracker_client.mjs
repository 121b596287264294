// The bittorrent-tracker client against our tracker: two peers (a seeder A and a leecher B) in one
// swarm, announce and scrape over one announce URL (http://, udp:// or ws://).
//
//   node tracker_client.mjs ANNOUNCE_URL INFO_HASH_HEX
//
// Prints one JSON line: what each peer learned (peers, counts) and the scrapes along the way.
import Client from 'bittorrent-tracker'

const [url, infoHash] = process.argv.slice(2)
const isWs = url.startsWith('ws')
const deadline = setTimeout(() => { console.log(JSON.stringify({ error: 'timeout', log })); process.exit(2) }, 25000)
const log = []

function makeClient (name, peerIdChar, port, left) {
  const state = { left }
  const client = new Client({
    infoHash,
    peerId: Buffer.alloc(20, peerIdChar).toString('hex'),
    announce: [url],
    port,
    rtcConfig: { iceServers: [] },
    getAnnounceOpts: () => ({ left: state.left, uploaded: 0, downloaded: 0 })
  })
  const c = { name, client, state, peers: [], updates: [], scrapes: [], warnings: [] }
  client.on('peer', peer => {
    c.peers.push(typeof peer === 'string' ? peer : 'webrtc:' + peer.id)
    if (typeof peer !== 'string') peer.on('error', () => {})
  })
  client.on('update', d => c.updates.push({ complete: d.complete, incomplete: d.incomplete }))
  client.on('scrape', d => c.scrapes.push({ complete: d.complete, incomplete: d.incomplete, downloaded: d.downloaded }))
  client.on('warning', e => { c.warnings.push(String(e.message || e)); log.push(name + ' warning ' + e.message) })
  client.on('error', e => { log.push(name + ' error ' + e.message) })
  return c
}

const wait = (pred, what) => new Promise((resolve, reject) => {
  const t0 = Date.now()
  const iv = setInterval(() => {
    if (pred()) { clearInterval(iv); resolve() } else if (Date.now() - t0 > 10000) { clearInterval(iv); reject(new Error('waiting for ' + what)) }
  }, 20)
})

// On a WebSocket, both clients share one socket (bittorrent-tracker pools sockets per URL), so
// each sees the other's replies too: always wait for a new event and take the latest.
async function next (c, key, action, what) {
  const n = c[key].length
  action()
  await wait(() => c[key].length > n, what)
  return c[key][c[key].length - 1]
}

const A = makeClient('A', 0x61, 6881, 0)
const B = makeClient('B', 0x62, 6882, 1000)
const out = {}
try {
  out.a_first = await next(A, 'updates', () => A.client.start(), 'A update')
  await next(B, 'updates', () => B.client.start(), 'B update')
  // HTTP/UDP: B learns A's address from the announce reply. WebSocket: B's offer reaches A,
  // A answers, the answer comes back to B; both then report a WebRTC peer.
  await wait(() => B.peers.length >= 1 && (!isWs || A.peers.length >= 1), 'peers')
  out.b_first = B.updates[B.updates.length - 1]
  out.a_second = await next(A, 'updates', () => A.client.update(), 'A second update')
  if (!isWs) await wait(() => A.peers.length >= 1, 'A peer')
  out.scrape1 = await next(B, 'scrapes', () => B.client.scrape(), 'scrape 1')
  B.state.left = 0
  out.b_completed = await next(B, 'updates', () => B.client.complete(), 'B completed')
  out.scrape2 = await next(B, 'scrapes', () => B.client.scrape(), 'scrape 2')
  B.client.stop()
  await new Promise(resolve => setTimeout(resolve, 300))
  out.scrape3 = await next(A, 'scrapes', () => A.client.scrape(), 'scrape 3')
  out.a_peers = A.peers
  out.b_peers = B.peers
  out.warnings = A.warnings.concat(B.warnings)
  out.ok = true
} catch (e) {
  out.ok = false
  out.error = String(e.message)
  out.a = { peers: A.peers, updates: A.updates, scrapes: A.scrapes }
  out.b = { peers: B.peers, updates: B.updates, scrapes: B.scrapes }
  out.log = log
}
clearTimeout(deadline)
console.log(JSON.stringify(out))
A.client.destroy()
B.client.destroy()
setTimeout(() => process.exit(0), 200).unref()
