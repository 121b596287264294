// Sign-in with a signed event: the gateway's challenge in a kind 22242 event whose relay tag
// names this gateway (tgateway/nostr/login.py refuses events for other servers).
import { api } from './api.js'

export async function fetchChallenge () {
  return api('/api/auth/challenge', { auth: false })
}

export function loginTemplate (challenge, nowMs = Date.now()) {
  return {
    kind: 22242,
    created_at: Math.floor(nowMs / 1000),
    tags: [['relay', challenge.relay], ['challenge', challenge.challenge]],
    content: ''
  }
}

// NIP-07: window.nostr, from a browser extension.
export async function signInWithExtension () {
  const nostr = window.nostr
  if (!nostr || typeof nostr.signEvent !== 'function') {
    throw new Error('No Nostr extension (NIP-07) found in this browser: install Alby or nos2x, or use a remote signer.')
  }
  const challenge = await fetchChallenge()
  let event
  try {
    event = await nostr.signEvent(loginTemplate(challenge))
  } catch (e) {
    throw new Error('Your extension did not sign the sign-in event' + (e && e.message ? `: ${e.message}` : '.'))
  }
  return api('/api/auth/login', { method: 'POST', json: { auth_type: 'nip07', event }, auth: false })
}
