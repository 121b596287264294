// The file page's preview: an image, an audio player, or the video player.
//
// Video: when the transcode is done, HLS (hls.js, or the browser's own HLS) with a quality
// choice; while it is queued or running, the original (/api/stream/<sha256>?original=true) with
// the transcode's live progress, switching to HLS at the same position when it is done; when
// there is no transcode, /api/stream/<sha256> (the original). The <video> says what it plays in
// data-source ("original", "hls", "transcoded", "stream", "webtorrent") and, with HLS, the
// rendition playing in data-quality.
import { h, show } from './dom.js'
import { api } from './api.js'
import { config } from './config.js'
import { formatPercent } from './format.js'
import { hlsWorkerUrl, loadHls } from './vendor.js'
import { poll } from './poll.js'

// "unknown": the upload was not probed yet (that takes a moment after it is stored)
const PENDING = new Set(['queued', 'running', 'unknown'])
const UNKNOWN_POLLS = 20

export function showMedia (file, box) {
  const type = (file.mime_type || '').split(';')[0].trim().toLowerCase()
  const stream = `/api/stream/${file.sha256}`
  const alt = file.title || file.name
  if (type.startsWith('image/') && !type.includes('svg') && !type.includes('xml')) {
    box.append(h('img', { class: 'preview', src: stream, alt: `Preview of ${alt}` }))
  } else if (type.startsWith('audio/')) {
    box.append(h('audio', { controls: true, preload: 'metadata', src: stream, 'aria-label': `Play ${alt}` }))
  } else if (type.startsWith('video/')) {
    new VideoPlayer(file, box).start()
  } else {
    box.remove()
  }
}

class VideoPlayer {
  constructor (file, box) {
    this.file = file
    this.video = h('video', { controls: true, preload: 'metadata', playsinline: true, 'aria-label': `Play ${file.title || file.name}` })
    this.status = h('p', { class: 'player-status muted', 'aria-live': 'polite' })
    this.bar = h('progress', { max: 100, value: 0, hidden: true, 'aria-label': 'Transcoding progress' })
    this.quality = h('select', { 'aria-label': 'Quality', class: 'quality', hidden: true })
    this.qualityLabel = h('label', { class: 'quality-label', hidden: true }, 'Quality ', this.quality)
    this.video.addEventListener('error', () => {
      if (this.video.dataset.source === 'original') {
        this.status.textContent = 'This browser cannot play the original; the streams will play once the transcode is done.'
      }
    })
    box.append(h('div', { class: 'player' }, this.video),
      h('div', { class: 'player-bar' }, this.status, this.bar, this.qualityLabel))
  }

  async start () {
    let status = { state: 'disabled' }
    if (config.features.transcode) {
      try {
        status = await this.fetchStatus()
      } catch {}
    }
    if (status.state === 'done' && status.hls) return this.playHls(status)
    if (PENDING.has(status.state)) {
      this.play(`/api/stream/${this.file.sha256}?original=true`, 'original')
      this.watch(status)
      return
    }
    this.play(`/api/stream/${this.file.sha256}`, 'stream')
    if (status.state === 'failed') this.status.textContent = 'The transcode failed: playing the original.'
  }

  // the public status; the page's other parts (the owner's panel) hear of it too
  async fetchStatus () {
    const status = await api(`/api/files/${this.file.sha256}/transcoding`, { auth: false })
    document.dispatchEvent(new CustomEvent('tg:transcode', { detail: status }))
    return status
  }

  play (src, source) {
    this.video.dataset.source = source
    this.video.src = src
  }

  watch (status) {
    show(this.bar)
    const render = (s) => {
      this.bar.value = Math.floor((s.progress || 0))
      this.status.textContent = s.state === 'running'
        ? `Preparing streams: ${formatPercent((s.progress || 0) / 100)} · playing the original meanwhile`
        : s.state === 'queued'
          ? 'Streams are queued for transcoding · playing the original meanwhile'
          : 'Playing the original'
    }
    render(status)
    let unknown = 0
    poll(async () => {
      const s = await this.fetchStatus()
      if (s.state === 'unknown' && ++unknown > UNKNOWN_POLLS) s.state = 'not_video'
      if (s.state === 'done' && s.hls) {
        show(this.bar, false)
        await this.playHls(s, { resume: true })
        return false
      }
      if (!PENDING.has(s.state)) {
        show(this.bar, false)
        this.status.textContent = s.state === 'failed' ? 'The transcode failed: playing the original.' : ''
        return false
      }
      render(s)
    }, 1500)
  }

  async playHls (status, { resume = false } = {}) {
    const video = this.video
    const at = resume && !video.ended ? video.currentTime : 0
    const wasPlaying = resume && !video.paused && !video.ended
    const url = status.hls
    const restore = () => {
      if (at) video.currentTime = at
      if (wasPlaying) video.play().catch(() => {})
    }
    let Hls = null
    try {
      Hls = await loadHls()
    } catch {}
    if (Hls && Hls.isSupported()) {
      const hls = new Hls({ workerPath: hlsWorkerUrl(), enableWorker: true, startPosition: at || -1 })
      this.hls = hls
      video.dataset.source = 'hls'
      hls.on(Hls.Events.MANIFEST_PARSED, (_, data) => {
        const levels = data.levels.map((level, i) => ({ value: String(i), label: `${level.height}p`, height: level.height }))
        this.listQualities(levels.sort((a, b) => b.height - a.height),
          (value) => { hls.currentLevel = Number(value) })
        if (wasPlaying) video.play().catch(() => {})
      })
      hls.on(Hls.Events.LEVEL_SWITCHED, (_, data) => {
        const level = hls.levels[data.level]
        if (level) video.dataset.quality = `${level.height}p`
        this.quality.options[0].textContent = level ? `Auto (${level.height}p)` : 'Auto'
      })
      hls.on(Hls.Events.ERROR, (_, data) => {
        if (data.fatal) this.status.textContent = `The stream failed (${data.details}).`
      })
      hls.loadSource(url)
      hls.attachMedia(video)
    } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
      this.play(url, 'hls')
      video.addEventListener('loadedmetadata', restore, { once: true })
      this.listQualities(status.profiles.map((p) => ({ value: p.url, label: p.name })), (value) => {
        const t = video.currentTime
        this.play(value === 'auto' ? url : value, value === 'auto' ? 'hls' : 'transcoded')
        video.addEventListener('loadedmetadata', () => { video.currentTime = t; video.play().catch(() => {}) }, { once: true })
      })
    } else {
      this.play(`/api/stream/${this.file.sha256}`, 'transcoded')
      video.addEventListener('loadedmetadata', restore, { once: true })
    }
    this.status.textContent = `Streaming in ${status.profiles.map((p) => p.name).join(', ')}`
  }

  listQualities (choices, onChange) {
    this.quality.replaceChildren(h('option', { value: 'auto' }, 'Auto'),
      ...choices.map((c) => h('option', { value: c.value }, c.label)))
    this.quality.onchange = () => onChange(this.quality.value === 'auto' ? (this.hls ? '-1' : 'auto') : this.quality.value)
    show(this.quality)
    show(this.qualityLabel)
  }
}
