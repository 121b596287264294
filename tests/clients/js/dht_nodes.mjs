// Three bittorrent-dht 11 nodes on loopback whose only bootstrap node is the gateway's DHT node.
// argv: GATEWAY_PORT GATEWAY_INFO_HASH_HEX OUR_INFO_HASH_HEX OUR_PORT
//   a pings the gateway and looks up GATEWAY_INFO_HASH (announced by the gateway);
//   b announces OUR_INFO_HASH with OUR_PORT; c looks it up (it only knows the gateway).
// Prints one JSON line, then keeps the nodes up (so the gateway can query them) until killed
// or 60 s have passed.
import DHT from 'bittorrent-dht'

const [gwPort, gatewayHex, ourHex, ourPort] = process.argv.slice(2)
const gateway = { host: '127.0.0.1', port: Number(gwPort) }

function start () {
  return new Promise((resolve, reject) => {
    const dht = new DHT({ bootstrap: [`127.0.0.1:${gwPort}`] })
    dht.on('error', reject)
    dht.listen(0, '127.0.0.1')
    dht.once('ready', () => resolve(dht))
  })
}

function ping (dht) {
  return new Promise((resolve) => {
    dht._rpc.query(gateway, { q: 'ping' }, (err, res) => {
      resolve(err ? { error: String(err) } : { id: Buffer.from(res.r.id).toString('hex') })
    })
  })
}

function lookup (dht, hex) {
  return new Promise((resolve) => {
    const peers = new Set()
    const onpeer = (peer, infoHash) => {
      if (Buffer.from(infoHash).toString('hex') === hex) peers.add(`${peer.host}:${peer.port}`)
    }
    dht.on('peer', onpeer)
    dht.lookup(hex, (err) => {
      dht.removeListener('peer', onpeer)
      resolve({ error: err ? String(err) : null, peers: [...peers] })
    })
  })
}

function announce (dht, hex, port) {
  return new Promise((resolve) => dht.announce(hex, port, (err) => resolve(err ? String(err) : null)))
}

const guard = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, error: 'timeout' }))
  process.exit(1)
}, 45000)

const [a, b, c] = await Promise.all([start(), start(), start()])
const out = { ok: true }
out.ping = await ping(a)
out.lookup_gateway = await lookup(a, gatewayHex)
out.announce = await announce(b, ourHex, Number(ourPort))
out.lookup_ours = await lookup(c, ourHex)
out.nodes = [a, b, c].map((d) => d.toJSON().nodes.length)
out.ports = [a, b, c].map((d) => d.address().port)
clearTimeout(guard)
console.log(JSON.stringify(out))
setTimeout(() => { for (const d of [a, b, c]) d.destroy() }, 60000)
