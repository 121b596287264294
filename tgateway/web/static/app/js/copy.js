// Copy-to-clipboard buttons.
import { h } from './dom.js'
import { toast } from './toast.js'

export async function copyText (text) {
  try {
    await navigator.clipboard.writeText(text)
    return true
  } catch {
    // no clipboard permission (an http:// origin, an old browser): copy through a selection
    const area = h('textarea', { class: 'sr-only', readonly: true })
    area.value = text
    document.body.append(area)
    area.select()
    const ok = document.execCommand('copy')
    area.remove()
    return ok
  }
}

export function copyButton (text, what) {
  return h('button', {
    type: 'button',
    class: 'btn small',
    'aria-label': `Copy ${what}`,
    async onclick () {
      const ok = await copyText(text)
      toast(ok ? `${what} copied` : `Could not copy the ${what}`, { error: !ok })
    }
  }, 'Copy')
}
