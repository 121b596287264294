// NIP-46 started from the page (nostrconnect://), for phone signers that scan a QR code.
//
// The page makes a throwaway key and a secret, shows nostrconnect://<page key>?relay=...&secret=...
// and listens on those relays (the gateway's configured ones, allowed by its CSP). The signer
// answers "connect" with the secret; the page then asks it to sign the gateway's challenge and
// hands the signed event to POST /api/auth/login, where it is checked like any login event.
// Requests and answers are kind 24133 events, NIP-44 encrypted (nostr-tools' bundle).
import { api } from './api.js'
import { fetchChallenge, loginTemplate } from './nip07.js'
import { loadNostrTools } from './vendor.js'

const KIND = 24133

function randomHex (bytes) {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, '0')).join('')
}

export class NostrConnect {
  constructor (relays, { timeoutMs = 300000, onApprove = () => {} } = {}) {
    this.relayUrls = relays
    this.timeoutMs = timeoutMs
    this.onApprove = onApprove
    this.relays = []
    this.pending = new Map()
    this.closed = false
  }

  // The nostrconnect:// URI; starts listening on the relays.
  async open () {
    const NT = (this.NT = await loadNostrTools())
    this.sk = NT.generateSecretKey()
    this.pk = NT.getPublicKey(this.sk)
    this.secret = randomHex(16)
    const params = new URLSearchParams()
    for (const relay of this.relayUrls) params.append('relay', relay)
    params.set('secret', this.secret)
    params.set('perms', 'sign_event:22242')
    params.set('name', 'tgateway')
    params.set('url', location.origin)
    this.connected = new Promise((resolve, reject) => {
      this._connect = { resolve, reject }
    })
    const since = Math.floor(Date.now() / 1000) - 10
    const results = await Promise.allSettled(this.relayUrls.map(async (url) => {
      const relay = await NT.Relay.connect(url)
      relay.subscribe([{ kinds: [KIND], '#p': [this.pk], since }], { onevent: (e) => this._onEvent(e) })
      this.relays.push(relay)
    }))
    if (!this.relays.length) {
      throw new Error('None of the relays for phone signers can be reached: ' +
        results.map((r) => r.reason && r.reason.message).filter(Boolean).join('; '))
    }
    return `nostrconnect://${this.pk}?${params}`
  }

  _decrypt (event) {
    const key = this.NT.nip44.getConversationKey(this.sk, event.pubkey)
    return JSON.parse(this.NT.nip44.decrypt(event.content, key))
  }

  _onEvent (event) {
    let message
    try {
      message = this._decrypt(event)
    } catch {
      return // not for us, or not NIP-44
    }
    if (!this.signer) {
      if (message.result === this.secret) {
        this.signer = event.pubkey
        this._connect.resolve(event.pubkey)
      }
      return // only the answer with our secret connects (NIP-46)
    }
    if (event.pubkey !== this.signer) return
    const waiting = this.pending.get(message.id)
    if (!waiting) return
    if (message.result === 'auth_url') {
      this.onApprove(message.error)
      return
    }
    this.pending.delete(message.id)
    if (message.error) waiting.reject(new Error(`Your signer refused: ${message.error}`))
    else waiting.resolve(message.result)
  }

  async request (method, params) {
    const NT = this.NT
    const id = randomHex(8)
    const key = NT.nip44.getConversationKey(this.sk, this.signer)
    const event = NT.finalizeEvent({
      kind: KIND,
      created_at: Math.floor(Date.now() / 1000),
      tags: [['p', this.signer]],
      content: NT.nip44.encrypt(JSON.stringify({ id, method, params }), key)
    }, this.sk)
    const answer = new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }))
    await Promise.any(this.relays.map((r) => r.publish(event)))
    return withTimeout(answer, this.timeoutMs, `Your signer did not answer ${method} in time.`)
  }

  // Wait for the signer, have it sign the gateway's challenge, and sign in with that event.
  async signIn () {
    await withTimeout(this.connected, this.timeoutMs, 'No signer connected in time: show a new code.')
    const template = loginTemplate(await fetchChallenge())
    const signed = JSON.parse(await this.request('sign_event', [JSON.stringify(template)]))
    return api('/api/auth/login', { method: 'POST', json: { auth_type: 'nip46', event: signed }, auth: false })
  }

  close () {
    this.closed = true
    for (const relay of this.relays) {
      try {
        relay.close()
      } catch {}
    }
    this.relays = []
    if (this._connect) this._connect.reject(new Error('closed'))
  }
}

function withTimeout (promise, ms, message) {
  let timer
  return Promise.race([
    promise,
    new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(message)), ms)
    })
  ]).finally(() => clearTimeout(timer))
}
