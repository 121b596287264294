// WebTorrent (node) downloading from the gateway as a user's client does: the torrent's own
// trackers (HTTP, UDP, WebSocket), the TCP peers they list, and the torrent's web seeds. No
// DHT, LSD, PEX, UPnP, NAT-PMP or STUN servers. uTP is off: the gateway's peer speaks TCP only,
// and WebTorrent's default (uTP first) reaches it over TCP only once its uTP attempts (5 s
// each, retried after 1, 5 and 15 s) have timed out, about 40 s.
//
//   node webtorrent_download.mjs SOURCE OUT_DIR [webseeds|no-webseeds] [TIMEOUT_S]
//   SOURCE: a .torrent file or a magnet link
//   -> {"ok", "length", "sha256", "path", "sources": {wire type: bytes received}, "announced"}
import crypto from 'node:crypto'
import fs from 'node:fs'
import WebTorrent from 'webtorrent'

const [source, outDir, webSeedsArg, timeoutArg] = process.argv.slice(2)
const client = new WebTorrent({
  dht: false, lsd: false, utPex: false, natUpnp: false, natPmp: false, utp: false,
  webSeeds: webSeedsArg !== 'no-webseeds',
  tracker: { rtcConfig: { iceServers: [] } }
})
const fail = e => {
  console.log(JSON.stringify({ ok: false, error: String((e && e.message) || e) }))
  process.exit(1)
}
client.on('error', fail)
const deadline = setTimeout(() => fail('timeout'), Number(timeoutArg || 60) * 1000)
const torrent = client.add(source.startsWith('magnet:') ? source : fs.readFileSync(source),
  { path: outDir })
const wires = []
let announced = 0
torrent.on('wire', wire => wires.push(wire))
torrent.on('trackerAnnounce', () => { announced++ })
torrent.on('warning', e => console.error('warning', String(e.message || e)))
torrent.on('error', fail)
torrent.on('done', async () => {
  clearTimeout(deadline)
  const file = torrent.files[0]
  const data = Buffer.from(await file.arrayBuffer())
  const sources = {}
  for (const wire of wires) sources[wire.type] = (sources[wire.type] || 0) + wire.downloaded
  console.log(JSON.stringify({
    ok: true,
    length: data.length,
    sha256: crypto.createHash('sha256').update(data).digest('hex'),
    path: file.path,
    sources,
    announced
  }))
  client.destroy(() => process.exit(0))
})
