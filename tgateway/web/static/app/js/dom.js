// Building DOM without innerHTML: text from the gateway or a user only ever becomes a text node or
// an attribute value.

export function h (tag, attrs, ...children) {
  const el = tag.startsWith('svg:')
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag)
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value)
    } else if (key === 'class') {
      el.setAttribute('class', value)
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value)
    } else {
      el.setAttribute(key, value === true ? '' : String(value))
    }
  }
  append(el, children)
  return el
}

export function append (el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue
    el.append(child instanceof Node ? child : String(child))
  }
  return el
}

export const $ = (selector, root = document) => root.querySelector(selector)
export const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector))

// An http(s) URL, or null: for URLs that come from elsewhere (a signer's auth_url).
export function safeHttpUrl (value) {
  try {
    const url = new URL(value, location.href)
    return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null
  } catch {
    return null
  }
}

export function show (el, visible = true) {
  el.hidden = !visible
  return el
}
