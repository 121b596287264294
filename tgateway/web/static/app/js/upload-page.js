// The upload page: drop or pick several files; each becomes an UploadTask with its own progress,
// speed, time left and cancel button; two run at a time. A finished upload becomes a card with
// every face of the file.
import { $, h, show } from './dom.js'
import { config } from './config.js'
import { session } from './session.js'
import { UploadTask } from './upload-task.js'
import { fileCard } from './card.js'
import { formatBytes, formatDuration, formatPercent, formatSpeed } from './format.js'
import { toast } from './toast.js'

const PARALLEL = 2
const queue = []
let running = 0

export function start () {
  const form = $('#upload-form')
  const input = $('#upload-files')
  const drop = $('#drop')
  input.required = false
  form.addEventListener('submit', (e) => {
    e.preventDefault()
    addFiles(input.files)
  })
  input.addEventListener('change', () => {
    addFiles(input.files)
    input.value = ''
  })
  for (const type of ['dragenter', 'dragover']) {
    drop.addEventListener(type, (e) => {
      e.preventDefault()
      drop.classList.add('drop-over')
    })
  }
  for (const type of ['dragleave', 'dragend']) drop.addEventListener(type, () => drop.classList.remove('drop-over'))
  drop.addEventListener('drop', (e) => {
    e.preventDefault()
    drop.classList.remove('drop-over')
    if (e.dataTransfer && e.dataTransfer.files.length) addFiles(e.dataTransfer.files)
  })
  const hint = $('#upload-signin-hint')
  const update = () => show(hint, !session.get())
  session.onChange(update)
  update()
  // Files picked before this module ran (it is loaded after the page): their change event is gone.
  if (input.files && input.files.length) {
    addFiles(input.files)
    input.value = ''
  }
}

function options () {
  return {
    title: $('#upload-title').value.trim(),
    description: $('#upload-description').value.trim(),
    announceDht: !$('#upload-nodht').checked,
    token: session.token()
  }
}

function addFiles (fileList) {
  const files = Array.from(fileList || [])
  if (!files.length) return
  if (!config.upload.anonymous && !session.get()) {
    toast('Sign in to upload.', { error: true })
    return
  }
  show($('#queue-section'))
  for (const file of files) {
    if (file.size > config.upload.max_size) {
      $('#queue').append(row(file).failed(`Larger than the limit of ${formatBytes(config.upload.max_size)}.`))
      continue
    }
    if (file.size === 0) {
      $('#queue').append(row(file).failed('The file is empty.'))
      continue
    }
    const task = new UploadTask(file, options())
    const r = row(file, task)
    $('#queue').append(r.el)
    queue.push(task)
  }
  pump()
}

function pump () {
  while (running < PARALLEL && queue.length) {
    const task = queue.shift()
    if (task.state !== 'waiting') continue
    running++
    const finished = () => {
      running--
      pump()
    }
    task.addEventListener('done', finished)
    task.addEventListener('error', finished)
    task.addEventListener('cancel', finished)
    task.start()
  }
}

// One line of the queue: name, size, progress bar, speed and time left, cancel button.
function row (file, task) {
  const bar = h('progress', { max: 100, value: 0, 'aria-label': `Upload of ${file.name}` })
  const meta = h('p', { class: 'task-meta', 'aria-live': 'off' }, task ? 'Waiting…' : '')
  const cancel = h('button', {
    type: 'button',
    class: 'btn small',
    'aria-label': `Cancel the upload of ${file.name}`,
    onclick: () => task && task.cancel()
  }, 'Cancel')
  const el = h('li', { class: 'task' },
    h('div', { class: 'task-head' },
      h('span', { class: 'task-name' }, file.name),
      h('span', { class: 'task-size muted' }, formatBytes(file.size)),
      task ? cancel : null),
    bar, meta)
  const finish = (state, text, isError) => {
    el.classList.add(`task-${state}`)
    cancel.remove()
    meta.textContent = text
    if (isError) meta.setAttribute('role', 'alert')
  }
  if (task) {
    task.addEventListener('progress', ({ detail }) => {
      const fraction = detail.total ? detail.loaded / detail.total : 1
      bar.value = Math.floor(fraction * 100)
      const left = formatDuration(detail.timeLeft)
      meta.textContent = [formatPercent(fraction), formatSpeed(detail.speed), left && `${left} left`]
        .filter(Boolean).join(' · ')
      if (fraction >= 1 && task.state === 'uploading') meta.textContent = '100 % · hashing and storing…'
    })
    task.addEventListener('done', ({ detail }) => {
      bar.value = 100
      finish('done', `100 % · done · ${detail.new === false ? 'already stored' : 'stored'}`)
      show($('#done-section'))
      $('#cards').prepend(fileCard(detail))
      toast(`${file.name} is ready`)
    })
    task.addEventListener('error', ({ detail }) => finish('failed', detail.message, true))
    task.addEventListener('cancel', () => finish('cancelled', 'Cancelled'))
  }
  return {
    el,
    failed (text) {
      finish('failed', text, true)
      return el
    }
  }
}
