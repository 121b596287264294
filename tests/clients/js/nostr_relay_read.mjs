// Read events back from a relay with nostr-tools and check each with its verifyEvent.
// Usage: node nostr_relay_read.mjs <relay-url> '<filter JSON>' [timeout-ms]
// Prints one JSON line: {"events": [...], "verified": [bool...], "eose": bool}
import { Relay, useWebSocketImplementation } from 'nostr-tools/relay'
import { verifyEvent } from 'nostr-tools/pure'
import WebSocket from 'ws'

useWebSocketImplementation(WebSocket)
const [url, filterJson, timeoutArg] = process.argv.slice(2)
const filter = JSON.parse(filterJson)
const timeoutMs = Number(timeoutArg || 10000)

// the relay's own verification is switched off: we want to see what the relay stored and
// check it ourselves with verifyEvent
const relay = await Relay.connect(url, { verifyEvent: () => true })
const events = []
const eose = await new Promise((resolve) => {
  const timer = setTimeout(() => resolve(false), timeoutMs)
  const sub = relay.subscribe([filter], {
    onevent (event) { events.push(event) },
    oneose () { clearTimeout(timer); sub.close(); resolve(true) }
  })
})
relay.close()
const verified = events.map((e) => verifyEvent(JSON.parse(JSON.stringify(e))))
const out = JSON.stringify({ events, verified, eose })
console.log(out.replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0')))
process.exit(0)
