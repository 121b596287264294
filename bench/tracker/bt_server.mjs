// The reference: bittorrent-tracker's server (HTTP, UDP and WebSocket on one port number).
//   node bt_server.mjs PORT MODULES_DIR
// MODULES_DIR is tests/clients/node_modules (imported by path: this file lives outside it).
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const [port, modules] = process.argv.slice(2)
const { default: Server } = await import(pathToFileURL(path.join(modules, 'bittorrent-tracker', 'server.js')).href)
const server = new Server({ udp: true, http: true, ws: true, stats: false, trustProxy: false })
server.on('error', e => console.error('error', e.message))
server.on('warning', () => {})
server.listen(Number(port), '127.0.0.1', () => console.log('listening ' + port))
process.on('SIGTERM', () => server.close(() => process.exit(0)))
