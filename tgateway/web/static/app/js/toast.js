// One short message at a time in the page's polite live region.
let timer = null

export function toast (message, { error = false, ms = 4000 } = {}) {
  const el = document.getElementById('toast')
  if (!el) return
  el.textContent = message
  el.classList.toggle('toast-error', error)
  el.classList.add('toast-on')
  clearTimeout(timer)
  timer = setTimeout(() => el.classList.remove('toast-on'), ms)
}
