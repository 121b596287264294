// Interop helper for tgateway's Nostr tests: signs, hashes, verifies and encrypts with nostr-tools.
// Reads one JSON request on stdin, prints one JSON answer on stdout:
//   {"secret": hex, "sign": [template...], "verify": [event...], "hash": [event...],
//    "nip19": {"npub": hex, "nsec": hex, "note": hex, "nprofile": {pubkey, relays}, "decode": [str]},
//    "nip44": [{"sec1": hex, "pub2": hex, "plaintext": str, "payload": str?}],
//    "nip98": [{"url": str, "method": str, "payload": object?}]}  (needs "secret"; answers
//    {"token": "Nostr ...", "body": JSON text of the payload, which is what the tag hashes}),
//    "nip42": [{"relay": url, "challenge": str}]  (needs "secret"; the kind 22242 AUTH event
//    nostr-tools' makeAuthEvent builds, signed: answers "nip42": [event...])
import { finalizeEvent, verifyEvent, getEventHash, getPublicKey } from 'nostr-tools/pure'
import * as nip19 from 'nostr-tools/nip19'
import * as nip44 from 'nostr-tools/nip44'
import * as nip98 from 'nostr-tools/nip98'
import { makeAuthEvent } from 'nostr-tools/nip42'
import { hexToBytes, bytesToHex } from '@noble/hashes/utils'

const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const req = JSON.parse(Buffer.concat(chunks).toString('utf8'))
const out = {}
if (req.secret) {
  const sk = hexToBytes(req.secret)
  out.pubkey = getPublicKey(sk)
  out.signed = (req.sign || []).map((t) => finalizeEvent(t, sk))
  out.nip42 = (req.nip42 || []).map((a) => finalizeEvent(makeAuthEvent(a.relay, a.challenge), sk))
}
out.verified = (req.verify || []).map((e) => verifyEvent(e))
out.hashes = (req.hash || []).map((e) => getEventHash(e))
if (req.nip19) {
  const n = req.nip19
  out.nip19 = {}
  if (n.npub) out.nip19.npub = nip19.npubEncode(n.npub)
  if (n.nsec) out.nip19.nsec = nip19.nsecEncode(hexToBytes(n.nsec))
  if (n.note) out.nip19.note = nip19.noteEncode(n.note)
  if (n.nprofile) out.nip19.nprofile = nip19.nprofileEncode(n.nprofile)
  out.nip19.decoded = (n.decode || []).map((s) => {
    const d = nip19.decode(s)
    return { type: d.type, data: d.data instanceof Uint8Array ? bytesToHex(d.data) : d.data }
  })
}
if (req.nip44) {
  out.nip44 = req.nip44.map((c) => {
    const key = nip44.v2.utils.getConversationKey(hexToBytes(c.sec1), c.pub2)
    const r = { conversation_key: bytesToHex(key), encrypted: nip44.v2.encrypt(c.plaintext, key) }
    if (c.payload) r.decrypted = nip44.v2.decrypt(c.payload, key)
    return r
  })
}
if (req.nip98) {
  const sk = hexToBytes(req.secret)
  out.nip98 = []
  for (const r of req.nip98) {
    const token = await nip98.getToken(r.url, r.method, (t) => finalizeEvent(t, sk), true, r.payload)
    out.nip98.push({ token, body: r.payload ? JSON.stringify(r.payload) : null })
  }
}
// ASCII only: U+2028/U+2029 in the output would split the line for Python's splitlines()
console.log(JSON.stringify(out).replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0')))
