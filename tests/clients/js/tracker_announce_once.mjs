// One bittorrent-tracker client announces INFO_HASH_HEX once on ANNOUNCE_URL (http://, udp://
// or ws://) and reports how the tracker answered: the updates it got, and the tracker's failure
// reasons (bittorrent-tracker reports a "failure reason" as a warning).
//
//   node tracker_announce_once.mjs ANNOUNCE_URL INFO_HASH_HEX
//
// Prints one JSON line: {"updates": [...], "warnings": [...], "errors": [...]}.
import Client from 'bittorrent-tracker'

const [url, infoHash] = process.argv.slice(2)
const out = { updates: [], warnings: [], errors: [] }
const client = new Client({
  infoHash,
  peerId: Buffer.alloc(20, 0x63).toString('hex'),
  announce: [url],
  port: 6889,
  rtcConfig: { iceServers: [] },
  getAnnounceOpts: () => ({ left: 1000, uploaded: 0, downloaded: 0 })
})
function finish () {
  clearTimeout(deadline)
  console.log(JSON.stringify(out))
  client.destroy()
  setTimeout(() => process.exit(0), 200).unref()
}
const deadline = setTimeout(finish, 10000)
client.on('update', (d) => { out.updates.push({ complete: d.complete, incomplete: d.incomplete }); finish() })
client.on('warning', (e) => { out.warnings.push(String(e.message || e)); finish() })
client.on('error', (e) => { out.errors.push(String(e.message || e)); finish() })
client.start()
