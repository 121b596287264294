// The sign-in session (the gateway's bearer token), kept in localStorage so it survives reloads
// and is shared by the gateway's tabs. Storage only: account.js checks it with the gateway.

const KEY = 'tgateway.session'
const listeners = new Set()

function load () {
  try {
    const s = JSON.parse(localStorage.getItem(KEY))
    if (s && typeof s.token === 'string' && typeof s.pubkey === 'string' &&
        (!s.expires_at || s.expires_at * 1000 > Date.now())) return s
  } catch {}
  return null
}

let current = load()

function emit () {
  for (const fn of listeners) fn(current)
}

export const session = {
  get: () => current,
  token: () => (current ? current.token : null),
  set (value) {
    current = value
    localStorage.setItem(KEY, JSON.stringify(value))
    emit()
  },
  update (fields) {
    if (!current) return
    current = { ...current, ...fields }
    localStorage.setItem(KEY, JSON.stringify(current))
    emit()
  },
  clear () {
    if (!current) return
    current = null
    localStorage.removeItem(KEY)
    emit()
  },
  onChange (fn) {
    listeners.add(fn)
    return () => listeners.delete(fn)
  }
}

// another tab signed in or out
window.addEventListener('storage', (e) => {
  if (e.key === KEY) {
    current = load()
    emit()
  }
})
