// murmur's dashboard: the queue at a glance, recent jobs updating live over
// graphql-ws (jobsChanged for the list, jobUpdated for each job in flight),
// uploads with their progress, a job's transcript with downloads, cancel and
// retry. Plain JavaScript served as it is (no build step); the only
// other script is graphql-ws's own browser build, served from this server.
const ENDPOINT = new URL('/graphql', location.href).href;
const TERMINAL = new Set(['DONE', 'FAILED', 'CANCELLED']);
const $ = (selector) => document.querySelector(selector);

// The key: from ?key= (the link the server prints), then kept in this browser.
const fromLink = new URLSearchParams(location.search).get('key');
if (fromLink) {
  localStorage.setItem('murmur.key', fromLink);
  history.replaceState(null, '', location.pathname);
}
let key = localStorage.getItem('murmur.key') ?? '';
const auth = () => (key ? { authorization: `Bearer ${key}` } : {});

class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

async function gql(query, variables = {}) {
  const res = await fetch(ENDPOINT, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...auth() },
    body: JSON.stringify({ query, variables }),
  });
  const body = await res.json();
  if (body.errors?.length) {
    const error = new ApiError(body.errors[0].extensions?.code ?? 'ERROR', body.errors[0].message);
    if (error.code === 'UNAUTHENTICATED') askForKey(error.message);
    throw error;
  }
  return body.data;
}

function askForKey(reason) {
  const dialog = $('#key-dialog');
  if (dialog.open) return;
  if (reason) $('#key-reason').textContent = `${reason}. Create one with: murmur keys create --name dashboard`;
  $('#key-input').value = key;
  dialog.showModal();
}
$('#key-form').addEventListener('submit', () => {
  key = $('#key-input').value.trim();
  localStorage.setItem('murmur.key', key);
  reconnect();
  refresh();
});
$('#change-key').addEventListener('click', () => askForKey());

const JOB = 'id status progress attempts createdAt input { filename durationSeconds } error { code message }';

// One graphql-ws connection follows every job in flight on the page, and the list's changes.
let ws = null;
const following = new Map();
function reconnect() {
  for (const stop of following.values()) stop();
  following.clear();
  ws?.dispose();
  ws = graphqlWs.createClient({
    url: ENDPOINT.replace(/^http/, 'ws'),
    connectionParams: () => auth(),
    lazy: true,
    retryAttempts: Infinity,
    // What changed while the socket was down is not replayed: read the list again once it is back.
    on: { connected: (_socket, _payload, wasRetry) => wasRetry && refresh() },
  });
  // Jobs created or changed elsewhere (another tab, an app, the CLI) come into the list as they change status.
  ws.subscribe(
    { query: `subscription { jobsChanged { ${JOB} } }` },
    { next: ({ data }) => data && show(data.jobsChanged), error: () => {}, complete: () => {} },
  );
}
reconnect();

const jobs = new Map();

function follow(id) {
  if (following.has(id)) return;
  const stop = ws.subscribe(
    { query: `subscription ($id: ID!) { jobUpdated(id: $id) { ${JOB} result { partial text } } }`, variables: { id } },
    {
      next: ({ data }) => data && show(data.jobUpdated),
      error: () => following.delete(id),
      complete: () => following.delete(id),
    },
  );
  following.set(id, stop);
}

let queueSoon = null;

function show(job) {
  // a job that changed state changed the queue's counts too
  if (jobs.get(job.id)?.status !== job.status) queueSoon ??= setTimeout(() => ((queueSoon = null), refreshQueue().catch(() => {})), 300);
  jobs.set(job.id, job);
  let row = document.querySelector(`#jobs tr[data-id="${job.id}"]`);
  if (!row) {
    row = document.createElement('tr');
    row.dataset.id = job.id;
    row.innerHTML = '<td class="file"></td><td class="status"></td><td><progress max="1"></progress></td><td class="created"></td>';
    row.addEventListener('click', () => openJob(job.id));
    const body = $('#jobs tbody');
    // newest first
    const after = [...body.children].find((r) => jobs.get(r.dataset.id)?.createdAt < job.createdAt);
    body.insertBefore(row, after ?? null);
  }
  row.querySelector('.file').textContent = job.input.filename;
  const status = row.querySelector('.status');
  status.textContent = job.error && job.status !== 'DONE' ? `${job.status} (${job.error.code})` : job.status;
  status.className = `status status-${job.status}`;
  row.querySelector('progress').value = job.progress;
  row.querySelector('.created').textContent = new Date(job.createdAt).toLocaleTimeString();
  if (!TERMINAL.has(job.status)) follow(job.id);
  if ($('#detail').dataset.id === job.id && TERMINAL.has(job.status) && $('#detail').dataset.status !== job.status) openJob(job.id);
  if ($('#detail').dataset.id === job.id && job.result?.partial) showSoFar(job.result.text);
}

// While a job runs, the text of its windows done so far, growing.
function showSoFar(text) {
  const detail = $('#detail');
  let quote = detail.querySelector('blockquote.partial');
  if (!quote) {
    quote = document.createElement('blockquote');
    quote.className = 'partial';
    quote.title = 'so far: the job is still running';
    detail.append(quote);
  }
  quote.textContent = text;
}

async function refreshJobs() {
  const data = await gql(`{ jobs(first: 20) { nodes { ${JOB} } } }`);
  data.jobs.nodes.forEach(show);
}

const seconds = (s) =>
  s == null ? '—' : s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;

async function refreshQueue() {
  try {
    const { queue } = await gql(
      '{ queue { pending processing done failed cancelled workers oldestPendingAgeSeconds pools { pool workers pending oldestPendingAgeSeconds } } }',
    );
    $('#queue-note').hidden = true;
    $('#counts').innerHTML = '';
    for (const [name, value] of [
      ['pending', queue.pending],
      ['processing', queue.processing],
      ['done', queue.done],
      ['failed', queue.failed],
      ['cancelled', queue.cancelled],
      ['oldest waiting', seconds(queue.oldestPendingAgeSeconds)],
      ['live workers', queue.workers],
    ]) {
      const dt = document.createElement('dt');
      dt.textContent = name;
      const dd = document.createElement('dd');
      dd.textContent = value;
      dd.dataset.count = name;
      $('#counts').append(dt, dd);
    }
    $('#pools tbody').innerHTML = '';
    for (const p of queue.pools) {
      const row = document.createElement('tr');
      for (const cell of [p.pool, p.workers, p.pending, seconds(p.oldestPendingAgeSeconds)]) row.insertCell().textContent = cell;
      $('#pools tbody').append(row);
    }
  } catch (err) {
    if (err.code !== 'FORBIDDEN') throw err;
    $('#queue-note').hidden = false;
    $('#queue-note').textContent = 'The queue is shown to admin keys; this key sees its own jobs.';
  }
}

async function refresh() {
  await Promise.allSettled([refreshQueue(), refreshJobs()]);
}

// Uploads: a GraphQL multipart request through XMLHttpRequest, whose upload reports its progress.
function upload(file) {
  const item = document.createElement('li');
  item.innerHTML = '<span class="name"></span><progress max="1" value="0"></progress><span class="state">uploading</span>';
  item.querySelector('.name').textContent = file.name;
  $('#uploads').prepend(item);
  const input = {
    file: null,
    ...($('#language').value.trim() && { language: $('#language').value.trim() }),
    ...($('#words').checked && { wordTimestamps: true }),
  };
  const form = new FormData();
  form.append(
    'operations',
    JSON.stringify({ query: `mutation ($input: CreateJobInput!) { createJob(input: $input) { ${JOB} } }`, variables: { input } }),
  );
  form.append('map', JSON.stringify({ 0: ['variables.input.file'] }));
  form.append('0', file, file.name);
  const xhr = new XMLHttpRequest();
  xhr.open('POST', ENDPOINT);
  xhr.setRequestHeader('graphql-preflight', '1');
  for (const [name, value] of Object.entries(auth())) xhr.setRequestHeader(name, value);
  xhr.upload.addEventListener('progress', (e) => e.lengthComputable && (item.querySelector('progress').value = e.loaded / e.total));
  xhr.addEventListener('load', () => {
    let body = null;
    try {
      body = JSON.parse(xhr.responseText);
    } catch {}
    const error = body?.errors?.[0];
    if (error || !body?.data) {
      item.querySelector('.state').textContent = error ? `${error.extensions?.code}: ${error.message}` : `HTTP ${xhr.status}`;
      item.querySelector('.state').className = 'state error';
      if (error?.extensions?.code === 'UNAUTHENTICATED') askForKey(error.message);
      return;
    }
    item.querySelector('progress').value = 1;
    item.querySelector('.state').textContent = 'sent';
    show(body.data.createJob);
  });
  xhr.addEventListener('error', () => (item.querySelector('.state').textContent = 'the upload failed: the server could not be reached'));
  xhr.send(form);
}

$('#file').addEventListener('change', (e) => {
  [...e.target.files].forEach(upload);
  e.target.value = '';
});
const drop = $('#drop');
drop.addEventListener('dragover', (e) => {
  e.preventDefault();
  drop.classList.add('over');
});
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  [...e.dataTransfer.files].forEach(upload);
});

// A job: its transcript, downloads, cancel and retry.
async function openJob(id) {
  const { job } = await gql(
    `query ($id: ID!) { job(id: $id) { ${JOB} result { partial text language model segments { start end text } srt vtt } } }`,
    { id },
  );
  const detail = $('#detail');
  detail.hidden = false;
  detail.dataset.id = id;
  detail.dataset.status = job.status;
  detail.innerHTML = '<h2></h2><div class="actions"></div>';
  detail.querySelector('h2').textContent = `${job.input.filename} — ${job.status}`;
  const actions = detail.querySelector('.actions');
  const base = job.input.filename.replace(/\.[^.]+$/, '');
  if (job.result?.partial) showSoFar(job.result.text);
  else if (job.result) {
    for (const [label, text, ext, type] of [
      ['SRT', job.result.srt, 'srt', 'application/x-subrip'],
      ['VTT', job.result.vtt, 'vtt', 'text/vtt'],
      ['TXT', `${job.result.text}\n`, 'txt', 'text/plain'],
    ]) {
      const a = document.createElement('a');
      a.textContent = label;
      a.download = `${base}.${ext}`;
      a.href = URL.createObjectURL(new Blob([text], { type }));
      actions.append(a);
    }
  }
  for (const [label, mutation, allowed] of [
    ['Cancel', 'cancelJob', !TERMINAL.has(job.status)],
    ['Retry', 'retryJob', job.status === 'FAILED' || job.status === 'CANCELLED'],
  ]) {
    if (!allowed) continue;
    const button = document.createElement('button');
    button.textContent = label;
    button.addEventListener('click', async () => {
      const data = await gql(`mutation ($id: ID!) { ${mutation}(id: $id) { ${JOB} } }`, { id });
      show(data[mutation]);
      openJob(id);
    });
    actions.append(button);
  }
  if (job.error) {
    const p = document.createElement('p');
    p.className = 'error';
    p.textContent = `${job.error.code}: ${job.error.message}`;
    detail.append(p);
  }
  if (job.result && !job.result.partial) {
    const quote = document.createElement('blockquote');
    quote.textContent = job.result.text;
    const table = document.createElement('table');
    table.className = 'segments';
    table.innerHTML = '<thead><tr><th>start</th><th>end</th><th>text</th></tr></thead><tbody></tbody>';
    for (const s of job.result.segments) {
      const row = table.tBodies[0].insertRow();
      for (const cell of [s.start.toFixed(2), s.end.toFixed(2), s.text]) row.insertCell().textContent = cell;
    }
    const meta = document.createElement('p');
    meta.className = 'note';
    meta.textContent = `language ${job.result.language} · ${job.result.model}`;
    detail.append(quote, table, meta);
  }
}

refresh();
// The list and the counts come live; read again now and then for what no event tells (the oldest job's age, changes missed while reconnecting).
setInterval(refresh, 15_000);
