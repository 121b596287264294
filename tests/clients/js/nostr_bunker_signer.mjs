// A NIP-46 remote signer ("bunker") built on nostr-tools primitives, for tgateway's login tests.
// Usage: node nostr_bunker_signer.mjs <relay-url> <signer-secret-hex> <user-secret-hex> [mode] [secret]
//   mode: normal (default) | silent (never answers) | auth_url (first sign_event answers auth_url,
//         then the real result 1 s later) | rebind (signs with the relay tag changed to
//         another server, as a signer tricked by a hostile relay would) | connect (a phone
//         signer that scanned a nostrconnect:// code: `secret` is that URI; once subscribed it
//         answers the client's key with the URI's secret, then serves requests as in normal)
// Prints {"ready": true, "signer": <pubkey>, "user": <pubkey>} once subscribed, then one
// {"request": <method>} line per request handled ({"request": "sign_event", "tags": [...]} with
// the template's tags). Runs until killed.
import { Relay, useWebSocketImplementation } from 'nostr-tools/relay'
import { finalizeEvent, getPublicKey } from 'nostr-tools/pure'
import * as nip44 from 'nostr-tools/nip44'
import { hexToBytes } from '@noble/hashes/utils'
import WebSocket from 'ws'

useWebSocketImplementation(WebSocket)
const [url, signerHex, userHex, mode = 'normal', secret = ''] = process.argv.slice(2)
const signerSk = hexToBytes(signerHex)
const userSk = hexToBytes(userHex)
const signerPk = getPublicKey(signerSk)
const userPk = getPublicKey(userSk)
const print = (obj) => console.log(JSON.stringify(obj))

const relay = await Relay.connect(url)
let askedApproval = false

async function answer (request, clientPk, body) {
  const key = nip44.v2.utils.getConversationKey(signerSk, clientPk)
  const event = finalizeEvent({
    kind: 24133,
    created_at: Math.floor(Date.now() / 1000),
    tags: [['p', clientPk]],
    content: nip44.v2.encrypt(JSON.stringify(body), key)
  }, signerSk)
  await relay.publish(event)
}

function result (req) {
  switch (req.method) {
    case 'connect':
      if (req.params[0] !== signerPk || (secret && mode !== 'connect' && req.params[1] !== secret)) {
        return { id: req.id, result: '', error: 'bad secret' }
      }
      return { id: req.id, result: 'ack' }
    case 'get_public_key':
      return { id: req.id, result: userPk }
    case 'ping':
      return { id: req.id, result: 'pong' }
    case 'sign_event': {
      const template = JSON.parse(req.params[0])
      const tags = mode === 'rebind'
        ? template.tags.map((t) => (t[0] === 'relay' ? ['relay', 'wss://relay.evil.example'] : t))
        : template.tags
      const signed = finalizeEvent({
        kind: template.kind, created_at: template.created_at, tags, content: template.content
      }, userSk)
      return { id: req.id, result: JSON.stringify(signed) }
    }
    default:
      return { id: req.id, result: '', error: `unsupported method ${req.method}` }
  }
}

relay.subscribe([{ kinds: [24133], '#p': [signerPk], since: Math.floor(Date.now() / 1000) - 10 }], {
  async onevent (event) {
    let req
    try {
      const key = nip44.v2.utils.getConversationKey(signerSk, event.pubkey)
      req = JSON.parse(nip44.v2.decrypt(event.content, key))
    } catch (e) {
      print({ error: String(e) })
      return
    }
    print(req.method === 'sign_event'
      ? { request: req.method, tags: JSON.parse(req.params[0]).tags }
      : { request: req.method })
    if (mode === 'silent') return
    if (mode === 'auth_url' && req.method === 'sign_event' && !askedApproval) {
      askedApproval = true
      await answer(req, event.pubkey, { id: req.id, result: 'auth_url', error: 'https://signer.test/approve' })
      setTimeout(() => answer(req, event.pubkey, result(req)), 1000)
      return
    }
    await answer(req, event.pubkey, result(req))
  },
  async oneose () {
    if (mode === 'connect') {
      // nostrconnect://<client pubkey>?relay=...&secret=...: the signer speaks first (NIP-46)
      const uri = new URL(secret)
      const clientPk = uri.hostname || uri.pathname.replace(/^\/+/, '')
      await answer(null, clientPk, { id: Math.random().toString(36).slice(2), result: uri.searchParams.get('secret') })
      print({ connected: clientPk })
    }
    print({ ready: true, signer: signerPk, user: userPk })
  }
})
