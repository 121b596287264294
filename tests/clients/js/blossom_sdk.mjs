// blossom-client-sdk 5.1.0 against tgateway's Blossom server, signing with nostr-tools.
// Reads one JSON request on stdin: {"server": url, "secret": hex, "getAuth": bool}
// Runs: HEAD /upload preflight + upload (the SDK signs on 401), the same upload again, list,
// download (with a signed get token when getAuth), a CORS preflight, mirror from a second
// loopback HTTP server started here, a BUD-09 report, delete. Prints one JSON line of results.
import http from 'node:http'
import { createHash } from 'node:crypto'
import { finalizeEvent, getPublicKey } from 'nostr-tools/pure'
import { hexToBytes } from '@noble/hashes/utils'
import {
  Actions,
  createUploadAuth,
  createListAuth,
  createDeleteAuth,
  createDownloadAuth,
  createMirrorAuth,
} from 'blossom-client-sdk'

const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const req = JSON.parse(Buffer.concat(chunks).toString('utf8'))
const server = req.server
const sk = hexToBytes(req.secret)
const pubkey = getPublicKey(sk)
const signer = async (draft) => finalizeEvent(draft, sk)
const out = { pubkey }
const sha = (buf) => createHash('sha256').update(buf).digest('hex')

// 1. upload (HEAD /upload answers 401, the SDK signs an upload token scoped to this server)
const bytes = Buffer.from('hello from blossom-client-sdk\n'.repeat(1000))
const blob = new Blob([bytes], { type: 'text/plain' })
let authRequests = 0
const onAuth = async (srv, hash) => {
  authRequests++
  return createUploadAuth(signer, hash, { servers: srv })
}
out.upload = await Actions.uploadBlob(server, blob, { onAuth })
out.uploadAuthRequests = authRequests
out.expectedSha256 = sha(bytes)
// again: already stored
out.upload2 = await Actions.uploadBlob(server, blob, { onAuth })

// 2. list
out.list = await Actions.listBlobs(server, pubkey, { onAuth: async () => createListAuth(signer) })

// 3. download
const dlOpts = req.getAuth
  ? { onAuth: async (srv, hash) => createDownloadAuth(signer, hash) }
  : {}
const res = await Actions.downloadBlob(server, out.upload.sha256, dlOpts)
const got = Buffer.from(await res.arrayBuffer())
out.download = { status: res.status, sha256: sha(got), type: res.headers.get('content-type'),
                 cors: res.headers.get('access-control-allow-origin') }
out.has = await Actions.hasBlob(server, out.upload.sha256)

// 4. CORS preflight as a browser sends it
const pre = await fetch(new URL('/upload', server), {
  method: 'OPTIONS',
  headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'PUT',
             'Access-Control-Request-Headers': 'authorization, x-sha-256' },
})
out.preflight = { status: pre.status, origin: pre.headers.get('access-control-allow-origin'),
                  methods: pre.headers.get('access-control-allow-methods'),
                  headers: pre.headers.get('access-control-allow-headers') }

// 5. mirror from a second loopback HTTP server
const mirrorBytes = Buffer.from('mirrored content '.repeat(2000))
const mirrorSha = sha(mirrorBytes)
const origin = http.createServer((rq, rs) => {
  if (rq.url === `/${mirrorSha}.bin`) {
    rs.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': mirrorBytes.length })
    rs.end(mirrorBytes)
  } else { rs.writeHead(404); rs.end() }
})
await new Promise((resolve) => origin.listen(0, '127.0.0.1', resolve))
const originUrl = `http://127.0.0.1:${origin.address().port}/${mirrorSha}.bin`
out.mirror = await Actions.mirrorBlob(server,
  { url: originUrl, sha256: mirrorSha, size: mirrorBytes.length, type: 'application/octet-stream', uploaded: 0 },
  { onAuth: async (srv, hash) => createMirrorAuth(signer, hash, { servers: srv }) })
out.mirrorExpected = mirrorSha
origin.close()

// 6. report (BUD-09)
const report = finalizeEvent({ kind: 1984, created_at: Math.floor(Date.now() / 1000),
  tags: [['x', mirrorSha, 'other']], content: 'test report' }, sk)
const reported = await Actions.reportBlobs([server], report)
out.report = { id: report.id, ok: reported.get(server) === true }

// 7. delete the first blob, then it is gone
out.deleted = await Actions.deleteBlob(server, out.upload.sha256,
  { onAuth: async (srv, hash) => createDeleteAuth(signer, hash, { servers: srv }) })
out.hasAfterDelete = await Actions.hasBlob(server, out.upload.sha256)
out.listAfterDelete = (await Actions.listBlobs(server, pubkey,
  { onAuth: async () => createListAuth(signer) })).map((b) => b.sha256)

console.log(JSON.stringify(out))
