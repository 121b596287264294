// bittorrent-dht 11 node for the DHT benchmark: no bootstrap (loopback only), listens on
// 127.0.0.1:PORT, prints one JSON line when ready, runs until killed.
// The npm packages live in tests/clients/node_modules (installed by scripts/install-test-deps).
const { default: DHT } = await import(
  new URL('../../tests/clients/node_modules/bittorrent-dht/index.js', import.meta.url))

const port = Number(process.argv[2] || 0)
const dht = new DHT({ bootstrap: false })
dht.on('error', (err) => { console.error(String(err)); process.exit(1) })
dht.listen(port, '127.0.0.1', () => {
  console.log(JSON.stringify({ ready: true, port: dht.address().port, id: dht.nodeId.toString('hex') }))
})
