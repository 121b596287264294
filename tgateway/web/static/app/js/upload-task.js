// One file's upload: PUT /api/upload with the File itself as the body, so the browser streams it
// from disk (the page never reads it into memory). Progress, speed, time left; cancel aborts the
// request, and the gateway drops what it received.
//
// Events: 'progress' (detail {loaded, total, speed, timeLeft}), 'done' (detail: the file's JSON),
// 'error' (detail: an ApiError), 'cancel'.
import { errorFromResponse } from './api.js'
import { RateMeter } from './meter.js'

export class UploadTask extends EventTarget {
  constructor (file, { title = '', description = '', announceDht = true, token = null } = {}) {
    super()
    this.file = file
    this.options = { title, description, announceDht, token }
    this.state = 'waiting'
    this.meter = new RateMeter()
    this.xhr = null
  }

  start () {
    const { title, description, announceDht, token } = this.options
    const xhr = new XMLHttpRequest()
    this.xhr = xhr
    this.state = 'uploading'
    xhr.open('PUT', '/api/upload')
    xhr.setRequestHeader('Content-Type', this.file.type || 'application/octet-stream')
    xhr.setRequestHeader('X-Filename', encodeURIComponent(this.file.name))
    if (title) xhr.setRequestHeader('X-Title', encodeURIComponent(title))
    if (description) xhr.setRequestHeader('X-Description', encodeURIComponent(description))
    if (!announceDht) xhr.setRequestHeader('X-Announce-Dht', 'false')
    if (token) xhr.setRequestHeader('Authorization', 'Bearer ' + token)
    const total = this.file.size
    this.meter.add(performance.now(), 0)
    xhr.upload.onprogress = (e) => {
      this.meter.add(performance.now(), e.loaded)
      this._emit('progress', {
        loaded: e.loaded,
        total,
        speed: this.meter.speed(),
        timeLeft: this.meter.timeLeft(total)
      })
    }
    xhr.onload = () => {
      if (xhr.status === 200 || xhr.status === 201) {
        let body
        try {
          body = JSON.parse(xhr.responseText)
        } catch {
          return this._fail(errorFromResponse(xhr.status, ''))
        }
        this.state = 'done'
        this._emit('progress', { loaded: total, total, speed: this.meter.speed(), timeLeft: 0 })
        this._emit('done', body)
      } else {
        this._fail(errorFromResponse(xhr.status, xhr.responseText))
      }
    }
    xhr.onerror = () => this._fail(errorFromResponse(0, ''))
    xhr.onabort = () => {
      this.state = 'cancelled'
      this._emit('cancel', null)
    }
    xhr.send(this.file)
  }

  cancel () {
    if (this.state === 'uploading') this.xhr.abort()
    else if (this.state === 'waiting') {
      this.state = 'cancelled'
      this._emit('cancel', null)
    }
  }

  _fail (error) {
    this.state = 'failed'
    this._emit('error', error)
  }

  _emit (type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }))
  }
}
