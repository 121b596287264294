// What the admin pages share: the confirmation dialog (with a reason or "delete files" when an
// action takes one), a list that pages through an admin route ("Load more"), a filter form, and
// small pieces (a key, a badge, a date).
import { $, h, show } from './dom.js'
import { formatDate, shortKey } from './format.js'

// Ask before an action. Resolves to { reason, deleteFiles } when confirmed, null when cancelled
// (Cancel, Escape or the close button). Focus goes back to what had it.
export function ask ({ title, message, confirm = 'Confirm', danger = false, reason = false, deleteFiles = false }) {
  const dialog = $('#ask')
  const back = document.activeElement
  $('#ask-title').textContent = title
  $('#ask-message').textContent = message
  show($('#ask-reason-field'), reason)
  show($('#ask-files-field'), deleteFiles)
  $('#ask-reason').value = ''
  $('#ask-files').checked = false
  const button = $('#ask-confirm')
  button.textContent = confirm
  button.classList.toggle('danger', danger)
  button.classList.toggle('primary', !danger)
  dialog.returnValue = ''
  return new Promise((resolve) => {
    const cancel = () => dialog.close('cancel')
    $('#ask-cancel').addEventListener('click', cancel)
    dialog.addEventListener('close', () => {
      $('#ask-cancel').removeEventListener('click', cancel)
      if (back && back.isConnected) back.focus()
      resolve(dialog.returnValue === 'confirm'
        ? { reason: $('#ask-reason').value.trim(), deleteFiles: $('#ask-files').checked }
        : null)
    }, { once: true })
    dialog.showModal()
    ;(reason ? $('#ask-reason') : button).focus()
  })
}

// A list read page by page from an admin route. `load(offset)` answers the route's JSON,
// `items(page)` its list, `row(item)` an <li>. `reload()` starts again from the first page
// (its error, such as the API's 403, goes to the caller).
export function pagedList ({ load, items, row, empty, label }) {
  const count = h('p', { class: 'muted', 'aria-live': 'polite' })
  const list = h('ul', { class: 'admin-list', 'aria-label': label })
  const more = h('button', { type: 'button', class: 'btn', hidden: true }, 'Load more')
  let next = null
  let shown = 0
  let generation = 0
  const fill = async (offset, mine) => {
    const page = await load(offset)
    if (mine !== generation) return
    const got = items(page)
    list.append(...got.map(row))
    shown += got.length
    next = page.next_offset
    count.textContent = page.total === 0 ? empty : `${shown} of ${page.total}`
    show(more, next !== null && next !== undefined)
  }
  more.addEventListener('click', async () => {
    more.disabled = true
    try {
      await fill(next, generation)
    } finally {
      more.disabled = false
    }
  })
  return {
    el: h('div', { class: 'admin-paged' }, count, list, h('p', {}, more)),
    list,
    async reload () {
      const mine = ++generation
      list.replaceChildren()
      shown = 0
      await fill(0, mine)
    },
    removed () {
      shown -= 1
      count.textContent = shown > 0 ? count.textContent.replace(/^\d+ of (\d+)$/, (_, t) => `${shown} of ${t - 1}`) : empty
    }
  }
}

// A search/filter form: `fields` are its controls (each with its label), `apply()` runs on
// submit (Enter in a field, or the button).
export function filterForm (fields, apply, button = 'Search') {
  const form = h('form', { class: 'admin-filters', role: 'search' }, fields, h('button', { class: 'btn' }, button))
  form.addEventListener('submit', (e) => {
    e.preventDefault()
    apply()
  })
  return form
}

export function field (id, label, control) {
  control.id = id
  return h('div', { class: 'admin-field' }, h('label', { for: id }, label), control)
}

export function key (pubkey) {
  return pubkey ? h('code', { class: 'key', title: pubkey }, shortKey(pubkey, 12, 6)) : h('span', { class: 'muted' }, 'anonymous')
}

export function badge (text, kind) {
  return h('span', { class: `badge${kind ? ' badge-' + kind : ''}` }, text)
}

export function when (unixSeconds) {
  if (!unixSeconds) return h('span', { class: 'muted' }, '–')
  return h('time', { datetime: new Date(unixSeconds * 1000).toISOString() }, formatDate(unixSeconds))
}

export function fileLink (sha256, text) {
  return h('a', { href: `/f/${sha256}`, class: 'hash' }, text || shortKey(sha256, 16, 6))
}

// A byte count the API reads back exactly ("5GB", "250MB"; bytes otherwise).
export function exactSize (n) {
  if (n === null || n === undefined) return ''
  for (const [unit, size] of [['TB', 1e12], ['GB', 1e9], ['MB', 1e6], ['kB', 1e3]]) {
    if (n >= size && n % size === 0) return `${n / size}${unit}`
  }
  return String(n)
}

// "90 d", "12 h", "45 s": a rule's age
export function age (seconds) {
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['min', 60]]) {
    if (seconds >= size && seconds % size === 0) return `${seconds / size} ${unit}`
  }
  return `${seconds} s`
}
