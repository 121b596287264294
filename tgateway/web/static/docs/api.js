// Renders the gateway port's OpenAPI document (/api/openapi.json): one section per tag, one
// collapsible entry per operation with its auth, parameters, body and responses. Text only
// (textContent): the document is data, never markup.

const el = (tag, text, cls) => {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
};

const AUTH = { session: 'session bearer', nip98: 'NIP-98', blossom: 'Blossom token (kind 24242)' };

function authText(op) {
  const sec = op.security || [];
  if (!sec.length) return 'no sign-in';
  const names = sec.flatMap((req) => Object.keys(req)).map((n) => AUTH[n] || n);
  const optional = sec.some((req) => Object.keys(req).length === 0);
  return (optional ? 'optional: ' : 'needs: ') + names.join(' or ');
}

function table(rows, head) {
  const t = el('table');
  const hr = el('tr');
  head.forEach((h) => hr.append(el('th', h)));
  t.append(hr);
  rows.forEach((cells) => {
    const tr = el('tr');
    cells.forEach((c) => tr.append(el('td', c)));
    t.append(tr);
  });
  return t;
}

function operation(path, method, op) {
  const d = el('details');
  const s = el('summary');
  s.append(el('span', method.toUpperCase(), 'method'), el('code', path), ' ', op.summary || '');
  s.append(el('span', authText(op), 'auth'));
  d.append(s);
  if (op.description) d.append(el('p', op.description));
  const params = op.parameters || [];
  if (params.length) {
    d.append(el('h4', 'Parameters'));
    d.append(table(params.map((p) => [p.name, p.in, p.required ? 'yes' : '',
      p.schema && p.schema.pattern ? p.schema.pattern : (p.schema && p.schema.type) || '',
      p.description || '']), ['name', 'in', 'required', 'shape', 'what']));
  }
  if (op.requestBody) {
    d.append(el('h4', 'Body'));
    d.append(el('p', Object.keys(op.requestBody.content).join(', ')));
  }
  d.append(el('h4', 'Responses'));
  d.append(table(Object.entries(op.responses).map(([code, r]) => [code, r.description,
    Object.keys(r.content || {}).join(', '), Object.keys(r.headers || {}).join(', ')]),
  ['status', 'when', 'body', 'headers']));
  d.append(el('p', `operationId: ${op.operationId}`));
  return d;
}

async function main() {
  const status = document.getElementById('status');
  const root = document.getElementById('api');
  let doc;
  try {
    const r = await fetch('/api/openapi.json');
    doc = await r.json();
  } catch (e) {
    status.textContent = `Could not load /api/openapi.json: ${e}`;
    return;
  }
  status.textContent = `${doc.info.title} ${doc.info.version}: ${doc.info.description || ''}`;
  const byTag = new Map();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags && op.tags[0]) || 'other';
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push([path, method, op]);
    }
  }
  for (const [tag, ops] of byTag) {
    const section = el('section');
    section.append(el('h2', tag));
    ops.forEach(([path, method, op]) => section.append(operation(path, method, op)));
    root.append(section);
  }
  const schemes = el('section');
  schemes.append(el('h2', 'Sign-in'));
  for (const [name, s] of Object.entries(doc.components.securitySchemes || {})) {
    schemes.append(el('p', `${AUTH[name] || name}: ${s.description || ''}`));
  }
  root.append(schemes);
}

main();
