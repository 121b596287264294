// The header's account area: "Sign in", or the signed-in key with "Sign out". On load the stored
// session is checked with the gateway (GET /api/auth/session), as is a new one after sign-in; an
// expired one is dropped.
// Navigation entries marked data-needs="admin" (tgateway/web/pages.py Section.needs) are shown
// when the session says the user is an admin.
import { $, $$, h, show } from './dom.js'
import { api } from './api.js'
import { session } from './session.js'
import { shortKey } from './format.js'
import { openSignin } from './signin.js'
import { toast } from './toast.js'

let checked = null

export function setupAccount () {
  session.onChange((s) => {
    render(s)
    check(s)
  })
  render(session.get())
  check(session.get())
}

// Ask the gateway about a session once: at load, and right after a sign-in (whether the key is
// an admin's is known from then on, without a reload).
function check (s) {
  if (!s || s.token === checked) return
  checked = s.token
  api('/api/auth/session')
    .then((answer) => session.update({ npub: answer.npub, admin: Boolean(answer.admin) }))
    .catch(() => {}) // a 401 already dropped the session (api.js)
}

function render (s) {
  const area = $('#account')
  area.replaceChildren()
  for (const item of $$('[data-needs="admin"]')) show(item, Boolean(s && s.admin))
  if (!s) {
    area.append(h('button', { type: 'button', class: 'btn', id: 'signin-open', onclick: openSignin }, 'Sign in'))
    return
  }
  const who = s.npub || s.pubkey
  area.append(
    h('span', { class: 'who', title: who }, h('span', { class: 'sr-only' }, 'Signed in as '), shortKey(who, 9, 4)),
    h('button', { type: 'button', class: 'btn', id: 'signout', onclick: signOut }, 'Sign out'))
}

async function signOut () {
  try {
    await api('/api/auth/logout', { method: 'POST' })
  } catch {} // an unknown session is signed out anyway
  session.clear()
  toast('Signed out')
}
