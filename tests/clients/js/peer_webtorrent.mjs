// WebTorrent (node) downloading a torrent from the gateway's BitTorrent peer alone: no trackers,
// no DHT, LSD, PEX, UPnP, NAT-PMP or web seeds; the gateway is added as a TCP peer.
//
//   node peer_webtorrent.mjs TORRENT_FILE HOST:PORT OUT_DIR [TIMEOUT_S]
//   -> {"ok", "length", "path", "wires", "downloaded", "seconds"}
import fs from 'node:fs'
import WebTorrent from 'webtorrent'

const [torrentFile, peer, outDir, timeoutArg] = process.argv.slice(2)
const client = new WebTorrent({
  dht: false, lsd: false, utPex: false, natUpnp: false, natPmp: false, webSeeds: false,
  tracker: false, utp: false
})
const fail = e => { console.log(JSON.stringify({ ok: false, error: String((e && e.message) || e) })); process.exit(1) }
client.on('error', fail)
const deadline = setTimeout(() => fail('timeout'), Number(timeoutArg || 120) * 1000)
const started = Date.now()
const torrent = client.add(fs.readFileSync(torrentFile), { path: outDir, announce: [] })
const wires = []
torrent.on('wire', (wire, addr) => wires.push(String(addr || wire.remoteAddress)))
torrent.on('warning', e => console.error('warning', String(e.message || e)))
torrent.on('error', fail)
torrent.on('ready', () => torrent.addPeer(peer))
torrent.on('done', () => {
  clearTimeout(deadline)
  const f = torrent.files[0]
  console.log(JSON.stringify({
    ok: true, length: f.length, path: f.path, wires, downloaded: torrent.downloaded,
    seconds: (Date.now() - started) / 1000
  }))
  client.destroy(() => process.exit(0))
})
