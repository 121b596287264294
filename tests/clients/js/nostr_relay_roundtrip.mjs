// Smoke test for a relay: publish one signed event with nostr-tools, read it back with a REQ
// (by id), and check its signature. Usage: node nostr_relay_roundtrip.mjs ws://127.0.0.1:PORT
// Prints one JSON line: {"published": reason, "event": {...}, "received": [...], "verified": bool}
import WebSocket from 'ws'
import { finalizeEvent, generateSecretKey, getPublicKey, verifyEvent } from 'nostr-tools/pure'
import { Relay, useWebSocketImplementation } from 'nostr-tools/relay'

useWebSocketImplementation(WebSocket)

const url = process.argv[2]
if (!url) throw new Error('usage: nostr_relay_roundtrip.mjs RELAY_URL')

const sk = generateSecretKey()
const event = finalizeEvent({
  kind: 1,
  created_at: Math.floor(Date.now() / 1000),
  tags: [['t', 'tgateway-smoke']],
  content: 'hello from tgateway smoke test'
}, sk)

const relay = await Relay.connect(url)
const published = await relay.publish(event)

const received = await new Promise((resolve, reject) => {
  const events = []
  const timer = setTimeout(() => reject(new Error('no EOSE within 10 s')), 10000)
  const sub = relay.subscribe([{ ids: [event.id] }], {
    onevent (e) { events.push(e) },
    oneose () {
      clearTimeout(timer)
      sub.close()
      resolve(events)
    }
  })
})
relay.close()

console.log(JSON.stringify({
  published,
  pubkey: getPublicKey(sk),
  event,
  received,
  verified: received.length === 1 && verifyEvent(received[0]) && received[0].id === event.id
}))
