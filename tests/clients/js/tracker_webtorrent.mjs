// WebTorrent (node, WebRTC through @roamhq/wrtc) finding another WebTorrent only through our
// WebSocket tracker. No DHT, LSD, PEX, UPnP, NAT-PMP, web seeds or STUN servers.
//
//   node tracker_webtorrent.mjs seed WS_URL SIZE      -> {"infoHash", "torrent": base64, "sha256"}; keeps seeding
//   node tracker_webtorrent.mjs leech WS_URL TORRENT_BASE64  -> {"ok", "length", "sha256", "wires"}
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import WebTorrent from 'webtorrent'

const [mode, url, arg] = process.argv.slice(2)
const client = new WebTorrent({
  dht: false, lsd: false, utPex: false, natUpnp: false, natPmp: false, webSeeds: false,
  tracker: { rtcConfig: { iceServers: [] } }
})
client.on('error', e => { console.log(JSON.stringify({ ok: false, error: String(e.message || e) })); process.exit(1) })
// A fresh store folder per process: the default (/tmp/webtorrent/<hash>) would let the leecher
// find the seeder's pieces on disk and finish without the network.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-wt-'))
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
const opts = { announce: [url], private: false, path: dir }

if (mode === 'seed') {
  const data = crypto.randomBytes(Number(arg))
  data.name = 'data.bin'
  client.seed(data, { ...opts, name: 'data.bin' }, torrent => {
    console.log(JSON.stringify({
      infoHash: torrent.infoHash,
      torrent: Buffer.from(torrent.torrentFile).toString('base64'),
      sha256: crypto.createHash('sha256').update(data).digest('hex'),
      announce: torrent.announce
    }))
  })
  setTimeout(() => process.exit(0), 90000).unref()
} else {
  const deadline = setTimeout(() => {
    console.log(JSON.stringify({ ok: false, error: 'timeout' }))
    process.exit(2)
  }, 60000)
  const torrent = client.add(Buffer.from(arg, 'base64'), opts)
  const wires = []
  torrent.on('wire', (wire, addr) => wires.push(wire.type || String(addr)))
  torrent.on('warning', e => console.error('warning', String(e.message || e)))
  torrent.on('done', () => {
    torrent.files[0].arrayBuffer().then(buf => {
      clearTimeout(deadline)
      console.log(JSON.stringify({
        ok: true,
        length: buf.byteLength,
        sha256: crypto.createHash('sha256').update(Buffer.from(buf)).digest('hex'),
        announce: torrent.announce,
        wires,
        downloaded: torrent.downloaded
      }))
      client.destroy(() => process.exit(0))
    })
  })
}
