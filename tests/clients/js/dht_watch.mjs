// A bittorrent-dht 11 node on loopback whose only bootstrap node is the gateway's DHT node,
// looking INFO_HASH_HEX up again and again: it reports whether the gateway's peer is found.
// Peers announced to this node expire after MAX_AGE_MS (0.66-1.33 of it), as on the real DHT,
// where an announce lasts until the next re-announce: a node the gateway stopped announcing
// to forgets it.
//
//   node dht_watch.mjs GATEWAY_DHT_PORT INFO_HASH_HEX PEER "HOST:PORT" MAX_AGE_MS
//
// Prints a JSON line per lookup: {"n": i, "found": bool, "peers": [...], "local": [...],
// "at": ms} (local: the peers announced to this node itself); runs until killed (or 120 s).
import DHT from 'bittorrent-dht'

const [gwPort, hex, wanted, maxAge] = process.argv.slice(2)
const dht = new DHT({ bootstrap: [`127.0.0.1:${gwPort}`], maxAge: Number(maxAge) })
dht.on('error', (e) => { console.log(JSON.stringify({ error: String(e) })); process.exit(1) })
dht.listen(0, '127.0.0.1')
await new Promise((resolve) => dht.once('ready', resolve))
const t0 = Date.now()

function lookup () {
  return new Promise((resolve) => {
    const peers = new Set()
    const onpeer = (peer, infoHash) => {
      if (Buffer.from(infoHash).toString('hex') === hex) peers.add(`${peer.host}:${peer.port}`)
    }
    dht.on('peer', onpeer)
    dht.lookup(hex, () => {
      dht.removeListener('peer', onpeer)
      resolve([...peers])
    })
  })
}

function local () {
  return dht._peers.get(hex, 100).map((b) => `${b[0]}.${b[1]}.${b[2]}.${b[3]}:${b.readUInt16BE(4)}`)
}

setTimeout(() => process.exit(0), 120000)
for (let n = 0; ; n++) {
  const peers = await lookup()
  console.log(JSON.stringify({ n, found: peers.includes(wanted), peers, local: local(), at: Date.now() - t0 }))
  await new Promise((resolve) => setTimeout(resolve, 300))
}
