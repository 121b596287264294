// blossom-client-sdk 5.1.0 BUD-05 media upload against tgateway's Blossom server.
// Reads one JSON request on stdin: {"server": url, "secret": hex, "file": path, "type": mime}
// Runs Actions.uploadMedia (HEAD /media, 401, a "media" token signed with nostr-tools for the
// file's sha256, PUT /media) and prints one JSON line: {"descriptor": ..., "sha256": original}.
import { readFile } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { finalizeEvent } from 'nostr-tools/pure'
import { hexToBytes } from '@noble/hashes/utils'
import { Actions, createUploadAuth } from 'blossom-client-sdk'

const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const req = JSON.parse(Buffer.concat(chunks).toString('utf8'))
const sk = hexToBytes(req.secret)
const signer = async (draft) => finalizeEvent(draft, sk)
const bytes = await readFile(req.file)
const blob = new Blob([bytes], { type: req.type })
let authType = null
const descriptor = await Actions.uploadMedia(req.server, blob, {
  onAuth: async (server, hash, type) => {
    authType = type
    return createUploadAuth(signer, hash, { type, servers: server })
  },
})
console.log(JSON.stringify({ descriptor, authType,
                             sha256: createHash('sha256').update(bytes).digest('hex') }))
