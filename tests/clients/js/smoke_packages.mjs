// Smoke test: every npm client used by the tests loads, and a WebTorrent client with every
// network discovery switched off can be created and destroyed. Prints one JSON line.
const names = [
  'bittorrent-tracker', 'bittorrent-tracker/server', 'bittorrent-dht', 'webtorrent',
  'create-torrent', 'parse-torrent', 'nostr-tools', 'nostr-tools/relay', 'blossom-client-sdk',
  'ws', 'webrtc-polyfill', '@roamhq/wrtc'
]
const loaded = {}
for (const name of names) {
  const mod = await import(name)
  loaded[name] = Object.keys(mod).length
}

const { RTCPeerConnection } = await import('webrtc-polyfill')
const pc = new RTCPeerConnection({ iceServers: [] })
pc.close()

const { default: WebTorrent } = await import('webtorrent')
const client = new WebTorrent({
  dht: false, lsd: false, utp: false, natUpnp: false, natPmp: false, tracker: false,
  utPex: false, webSeeds: false
})
await new Promise((resolve, reject) => {
  client.on('error', reject)
  client.destroy((err) => (err ? reject(err) : resolve()))
})
console.log(JSON.stringify({ ok: true, loaded, webtorrent: WebTorrent.VERSION, node: process.version }))
