// Ponte — the node's page for case workers (operatori) of an ASL, a Comune or an ATS.
//
// Plain modern JavaScript, no build step, no external resource: the page talks only to this
// node's /api/v1 (same origin, see the Content-Security-Policy). The login triple (system
// credential, pseudonymous operator id, role) is the only thing kept in the browser, in
// sessionStorage, so it disappears with the tab; nothing identifying is written to
// localStorage or to the console. Every text that comes from the node is put in the page with
// textContent, never parsed as HTML.
'use strict';

(() => {
  const API = '/api/v1';
  const SESSION_KEY = 'ponte.accesso';
  const MAX_SEARCH_RESULTS_SHOWN = 20;

  // The closed list of operator roles (the API contract), shown before the vocabulary can be
  // read; replaced by the node's own vocabulary as soon as it answers.
  const FALLBACK_ROLES = [
    { code: 'assistente_sociale', label: 'Assistente sociale' },
    { code: 'operatore_pua', label: 'Operatore PUA' },
    { code: 'membro_uvm', label: 'Membro UVM' },
    { code: 'operatore_cot', label: 'Operatore COT' },
    { code: 'mmg', label: 'Medico di medicina generale' },
    { code: 'referente_privacy', label: 'Referente privacy' },
  ];

  const BAND_TEXT = {
    certain: 'certa',
    probable: 'probabile',
    possible: 'possibile corrispondenza — da verificare',
  };

  const CONSENT_STATE_TEXT = {
    active: 'valido',
    valid: 'valido',
    attivo: 'valido',
    valido: 'valido',
    revoked: 'revocato',
    revocato: 'revocato',
    expired: 'scaduto',
    scaduto: 'scaduto',
    pending: 'non ancora valido',
    not_yet_valid: 'non ancora valido',
    future: 'non ancora valido',
  };

  // Italian explanations of the API's machine codes; the node's own (English) detail follows.
  const CODE_HINTS = {
    missing_credentials: 'mancano le credenziali di accesso.',
    invalid_credentials: 'la credenziale di sistema non è valida.',
    role_not_allowed: 'il sistema non è abilitato per il ruolo scelto.',
    refused: 'la politica di divulgazione della federazione non consente questa domanda.',
    malformed_json: 'la richiesta non è leggibile.',
    missing_header: 'manca un dato di accesso.',
    invalid_header: 'un dato di accesso non è valido.',
    invalid_query: 'i criteri di ricerca non sono validi.',
    invalid_value: 'un valore inserito non è valido.',
    not_found: 'elemento non trovato su questo nodo.',
    not_published: 'la persona ha solo prese in carico che non vengono pubblicate.',
    body_too_large: 'la richiesta è troppo grande.',
    coordinator_unavailable: 'il coordinatore della federazione non è raggiungibile; riprovare tra poco.',
  };

  const state = {
    session: null,
    vocab: null,
    consentPerson: null,
    idCounter: 0,
  };

  // ---------------------------------------------------------------------------------------
  // Small helpers.

  const $ = (id) => document.getElementById(id);

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'text') node.textContent = String(value);
      else if (key === 'class') node.className = value;
      else if (key === 'testid') node.dataset.testid = value;
      else if (key === 'dataset') Object.assign(node.dataset, value);
      else if (key === 'on') for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
      else if (key === 'hidden' || key === 'checked' || key === 'disabled' || key === 'selected' || key === 'multiple') node[key] = Boolean(value);
      else if (key === 'value') node.value = value;
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function uid(prefix) {
    state.idCounter += 1;
    return `${prefix}-${state.idCounter}`;
  }

  function fillSelect(select, items, { placeholder } = {}) {
    const previous = select.multiple ? null : select.value;
    select.replaceChildren();
    if (placeholder) select.append(el('option', { value: '', text: placeholder }));
    for (const item of items) select.append(el('option', { value: item.code, text: item.label || item.code }));
    if (previous && items.some((i) => i.code === previous)) select.value = previous;
  }

  function labelOf(list, code) {
    const found = (list || []).find((i) => i.code === code);
    return found ? found.label || code : humanise(code);
  }

  function humanise(code) {
    if (!code) return '';
    const text = String(code).replace(/_/g, ' ');
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  // The Italian label of a relationship status: the node's own label, the vocabulary's, or
  // the code itself.
  function statusText(code, label) {
    if (label) return label;
    const known = state.vocab && state.vocab.statuses.find((i) => i.code === code);
    if (known && known.label) return known.label;
    return code ? String(code).replace(/_/g, ' ') : '—';
  }

  // "2023-05" → "05/2023"
  function monthText(since) {
    const m = /^(\d{4})-(\d{2})/.exec(since || '');
    return m ? `${m[2]}/${m[1]}` : (since || '—');
  }

  // "1940-03-12" → "12/03/1940"
  function dayText(iso) {
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(iso || '');
    return m ? `${m[3]}/${m[2]}/${m[1]}` : (iso || '—');
  }

  // "12/03/1940", "12-3-1940", "12.03.1940" or "1940-03-12" → "1940-03-12"; null if not a real day.
  function parseDay(text) {
    const t = (text || '').trim();
    let y; let mo; let d;
    let m = /^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})$/.exec(t);
    if (m) { d = Number(m[1]); mo = Number(m[2]); y = Number(m[3]); } else {
      m = /^(\d{4})-(\d{1,2})-(\d{1,2})$/.exec(t);
      if (!m) return null;
      y = Number(m[1]); mo = Number(m[2]); d = Number(m[3]);
    }
    if (y < 1900 || y > 2200 || mo < 1 || mo > 12 || d < 1) return null;
    const days = new Date(Date.UTC(y, mo, 0)).getUTCDate();
    if (d > days) return null;
    return `${String(y).padStart(4, '0')}-${String(mo).padStart(2, '0')}-${String(d).padStart(2, '0')}`;
  }

  function yesNo(v) {
    return v ? 'sì' : 'no';
  }

  // ---------------------------------------------------------------------------------------
  // Messages: errors in the alert region, outcomes in the status region.

  class PageError extends Error {
    constructor(message, field) {
      super(message);
      this.field = field || null;
    }
  }

  class ApiError extends Error {
    constructor(status, problem) {
      const p = problem && typeof problem === 'object' ? problem : {};
      super(typeof p.detail === 'string' && p.detail ? p.detail : (typeof p.title === 'string' ? p.title : `HTTP ${status}`));
      this.status = status;
      this.code = typeof p.code === 'string' ? p.code : '';
      this.field = typeof p.field === 'string' ? p.field : '';
    }
  }

  function clearInvalid() {
    for (const node of document.querySelectorAll('[aria-invalid="true"]')) node.removeAttribute('aria-invalid');
  }

  function markInvalid(input) {
    if (!input) return;
    input.setAttribute('aria-invalid', 'true');
    input.focus();
  }

  function showError(err, form) {
    const box = $('alert');
    const text = $('alert-text');
    text.replaceChildren();
    setStatus('');
    if (err instanceof ApiError) {
      const prefix = err.status >= 500 ? 'Il nodo non ha potuto rispondere:' : 'Richiesta rifiutata:';
      const hint = CODE_HINTS[err.code];
      text.append(el('strong', { text: prefix }), ' ');
      if (hint) text.append(hint, ' ');
      text.append(el('span', { lang: 'en', class: 'detail', testid: 'alert-detail', text: err.message }));
      if (form && err.field) markInvalid(form.querySelector(`[name="${CSS.escape(err.field)}"]`));
    } else if (err instanceof PageError) {
      text.append(el('strong', { text: 'Dati da correggere:' }), ' ', err.message);
      if (err.field) markInvalid(err.field);
    } else {
      text.append(el('strong', { text: 'Errore imprevisto:' }), ' ', 'la pagina non è riuscita a completare l\'operazione. Ricaricarla e riprovare.');
    }
    box.hidden = false;
  }

  function clearError() {
    $('alert').hidden = true;
    $('alert-text').replaceChildren();
    clearInvalid();
  }

  function setStatus(message) {
    $('status').textContent = message || '';
  }

  // Runs an action from a button or a form: one at a time per control, errors to the alert.
  async function guarded(control, form, action) {
    if (control) control.disabled = true;
    clearError();
    try {
      await action();
    } catch (err) {
      showError(err, form);
    } finally {
      if (control) control.disabled = false;
    }
  }

  // ---------------------------------------------------------------------------------------
  // The node's API.

  async function api(method, path, body, { session } = {}) {
    const s = session || state.session;
    if (!s) throw new PageError('effettuare prima l\'accesso.');
    const headers = {
      Authorization: `Bearer ${s.credential}`,
      'X-Ponte-Operator': s.operator,
      'X-Ponte-Role': s.role,
      Accept: 'application/json',
    };
    const init = { method, headers, cache: 'no-store', credentials: 'same-origin', referrerPolicy: 'no-referrer' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(API + path, init);
    } catch (_) {
      throw new PageError('impossibile contattare il nodo; verificare la connessione e riprovare.');
    }
    const raw = await res.text();
    let data = null;
    if (raw) {
      try { data = JSON.parse(raw); } catch (_) { data = null; }
    }
    if (!res.ok) throw new ApiError(res.status, data);
    return data && typeof data === 'object' ? data : {};
  }

  const seg = (s) => encodeURIComponent(s);

  // ---------------------------------------------------------------------------------------
  // Session (the login triple, in sessionStorage only).

  function loadSession() {
    try {
      const raw = sessionStorage.getItem(SESSION_KEY);
      if (!raw) return null;
      const s = JSON.parse(raw);
      if (s && typeof s.credential === 'string' && typeof s.operator === 'string' && typeof s.role === 'string') return s;
    } catch (_) { /* unreadable: treated as logged out */ }
    return null;
  }

  function saveSession(s) {
    try { sessionStorage.setItem(SESSION_KEY, JSON.stringify(s)); } catch (_) { /* storage refused: session lasts the page */ }
  }

  function forgetSession() {
    try { sessionStorage.removeItem(SESSION_KEY); } catch (_) { /* nothing kept */ }
  }

  function showLoggedIn() {
    const s = state.session;
    const roles = state.vocab ? state.vocab.roles : FALLBACK_ROLES;
    $('login-form').hidden = true;
    $('login-info').hidden = false;
    $('login-status').textContent = `Accesso come ${s.operator} — ruolo: ${labelOf(roles, s.role)}.`;
    $('work').hidden = false;
  }

  function showLoggedOut() {
    $('login-form').hidden = false;
    $('login-info').hidden = true;
    $('work').hidden = true;
    $('login-credential').value = '';
  }

  // Forgets everything the page showed about persons.
  function clearWork() {
    state.consentPerson = null;
    $('person-list').replaceChildren();
    $('search-summary').textContent = '';
    $('who-else-section').hidden = true;
    $('who-else-rows').replaceChildren();
    $('who-else-subject').textContent = '';
    $('who-else-notice').textContent = '';
    $('who-else-receipt').textContent = '';
    $('intake-confirmation').hidden = true;
    $('intake-ask').replaceChildren();
    for (const id of ['search-cf-form', 'search-name-form', 'intake-form', 'consent-form']) $(id).reset();
    showConsentPerson(null);
  }

  // Checks the credential, the operator id and the role with the node before keeping them
  // (GET /api/v1/session: 401 / 403 / 400 on a header, 200 when accepted).
  async function checkSession(session) {
    await api('GET', '/session', undefined, { session });
  }

  async function login(event) {
    event.preventDefault();
    const credential = $('login-credential').value.trim();
    const operator = $('login-operator').value.trim();
    const role = $('login-role').value;
    await guarded($('login-submit'), $('login-form'), async () => {
      if (!credential) throw new PageError('inserire la credenziale di sistema.', $('login-credential'));
      if (!/^[A-Za-z0-9._-]{1,64}$/.test(operator)) {
        throw new PageError('l\'identificativo operatore deve avere da 1 a 64 caratteri tra lettere, cifre, punto, trattino e trattino basso.', $('login-operator'));
      }
      if (!role) throw new PageError('scegliere il ruolo.', $('login-role'));
      const session = { credential, operator, role };
      await checkSession(session);
      const vocab = await api('GET', '/vocabulary', undefined, { session });
      state.session = session;
      saveSession(session);
      applyVocabulary(vocab);
      showLoggedIn();
      setStatus('Accesso effettuato.');
      $('search-cf').focus();
    });
    $('login-credential').value = '';
  }

  function logout() {
    state.session = null;
    forgetSession();
    clearError();
    clearWork();
    showLoggedOut();
    setStatus('Uscita effettuata: i dati della sessione sono stati cancellati da questa scheda.');
    $('login-credential').focus();
  }

  // ---------------------------------------------------------------------------------------
  // Vocabulary.

  function listOf(v, key) {
    return Array.isArray(v && v[key]) ? v[key].filter((i) => i && typeof i.code === 'string') : [];
  }

  function applyVocabulary(v) {
    state.vocab = {
      purposes: listOf(v, 'purposes'),
      roles: listOf(v, 'roles'),
      services: listOf(v, 'services'),
      entity_types: listOf(v, 'entity_types'),
      consent_givers: listOf(v, 'consent_givers'),
      break_glass_reasons: listOf(v, 'break_glass_reasons'),
      category_groups: listOf(v, 'category_groups'),
      statuses: listOf(v, 'statuses'),
    };
    const vocab = state.vocab;
    if (vocab.roles.length) fillSelect($('login-role'), vocab.roles);
    fillSelect($('intake-service'), vocab.services, { placeholder: 'scegliere il servizio' });
    // Protected (T3) categories are the ones a consent usually unlocks: say so in the list.
    fillSelect($('consent-categories'), vocab.services.map((c) => (
      c.tier === 't3' ? { code: c.code, label: `${c.label || c.code} — protetta` } : c)));
    fillSelect($('consent-given-by'), vocab.consent_givers);
    fillChecks($('consent-recipients'), 'recipients', vocab.entity_types);
    fillChecks($('consent-purposes'), 'purposes', vocab.purposes);
    // Purpose selectors already on the page (search results, the intake confirmation).
    for (const select of document.querySelectorAll('select.purpose')) fillSelect(select, vocab.purposes);
    for (const select of document.querySelectorAll('select.break-glass')) fillSelect(select, vocab.break_glass_reasons, { placeholder: 'scegliere il motivo' });
  }

  function fillChecks(fieldset, name, items) {
    const legend = fieldset.querySelector('legend');
    fieldset.replaceChildren(legend);
    for (const item of items) {
      const id = `consent-${name}-${item.code}`;
      fieldset.append(el('label', { class: 'check', for: id },
        el('input', { type: 'checkbox', id, name, value: item.code, testid: id }),
        item.label || item.code));
    }
  }

  // The roles select before login: the node's vocabulary if it answers without credentials,
  // otherwise the contract's closed list.
  async function initialRoles() {
    fillSelect($('login-role'), FALLBACK_ROLES);
    try {
      const res = await fetch(`${API}/vocabulary`, { headers: { Accept: 'application/json' }, cache: 'no-store', credentials: 'same-origin' });
      if (!res.ok) return;
      const v = await res.json();
      const roles = listOf(v, 'roles');
      if (roles.length && !state.session) fillSelect($('login-role'), roles);
    } catch (_) { /* the closed list stays */ }
  }

  // ---------------------------------------------------------------------------------------
  // A purpose selector (+ break-glass reason for `emergenza`) and the who-else button.

  function askControls({ testPrefix, onAsk }) {
    const vocab = state.vocab || { purposes: [], break_glass_reasons: [] };
    const purposeId = uid('purpose');
    const reasonId = uid('break-glass');
    const purpose = el('select', { id: purposeId, class: 'purpose', testid: `purpose-${testPrefix}` });
    fillSelect(purpose, vocab.purposes);
    const reason = el('select', { id: reasonId, class: 'break-glass', testid: `break-glass-${testPrefix}` });
    fillSelect(reason, vocab.break_glass_reasons, { placeholder: 'scegliere il motivo' });
    const reasonField = el('div', { class: 'field', hidden: true },
      el('label', { for: reasonId, text: 'Motivo dell\'accesso in emergenza' }), reason);
    purpose.addEventListener('change', () => { reasonField.hidden = purpose.value !== 'emergenza'; });
    const button = el('button', { type: 'button', testid: `who-else-${testPrefix}`, class: 'who-else', text: 'Chi altro la segue?' });
    button.addEventListener('click', () => guarded(button, null, async () => {
      const breakGlass = purpose.value === 'emergenza' ? reason.value : null;
      if (!purpose.value) throw new PageError('scegliere la finalità della domanda.', purpose);
      if (purpose.value === 'emergenza' && !breakGlass) throw new PageError('per una domanda in emergenza indicare il motivo.', reason);
      await onAsk(purpose.value, breakGlass);
    }));
    return [
      el('div', { class: 'field' }, el('label', { for: purposeId, text: 'Finalità' }), purpose),
      reasonField,
      button,
    ];
  }

  // ---------------------------------------------------------------------------------------
  // Search.

  async function searchByCf(event) {
    event.preventDefault();
    const input = $('search-cf');
    await guarded($('search-cf-submit'), $('search-cf-form'), async () => {
      const cf = input.value.replace(/\s+/g, '').toUpperCase();
      if (!/^[A-Z0-9]{11,16}$/.test(cf)) throw new PageError('il codice fiscale ha 16 caratteri tra lettere e cifre.', input);
      const data = await api('GET', `/persons?${new URLSearchParams({ codice_fiscale: cf })}`);
      showPersons(data.persons);
    });
  }

  async function searchByName(event) {
    event.preventDefault();
    await guarded($('search-name-submit'), $('search-name-form'), async () => {
      const surname = $('search-surname').value.trim();
      const given = $('search-given').value.trim();
      if (!surname) throw new PageError('inserire il cognome.', $('search-surname'));
      if (!given) throw new PageError('inserire il nome.', $('search-given'));
      const birth = parseDay($('search-birth').value);
      if (!birth) throw new PageError('la data di nascita va scritta nel formato GG/MM/AAAA.', $('search-birth'));
      const params = new URLSearchParams({
        surname,
        given_name: given,
        birth_date: birth,
        tolerance_days: $('search-tolerance').value,
      });
      const data = await api('GET', `/persons?${params}`);
      showPersons(data.persons);
    });
  }

  function showPersons(list) {
    const persons = Array.isArray(list) ? list.slice(0, MAX_SEARCH_RESULTS_SHOWN) : [];
    const ul = $('person-list');
    ul.replaceChildren();
    $('search-summary').textContent = persons.length === 0
      ? 'Nessuna persona trovata su questo nodo.'
      : (persons.length === 1 ? '1 persona trovata.' : `${persons.length} persone trovate.`);
    for (const p of persons) {
      if (!p || typeof p.record_id !== 'string') continue;
      ul.append(personCard(p));
    }
  }

  function fullName(p) {
    return [p.surname, p.given_names].filter(Boolean).join(' ') || p.record_id;
  }

  function personCard(p) {
    const headingId = uid('person');
    const close = p.match === 'close';
    const score = typeof p.score === 'number' ? ` (${p.score.toFixed(2).replace('.', ',')})` : '';
    const rels = Array.isArray(p.relationships) ? p.relationships : [];
    const relList = el('ul', { class: 'plain', testid: `own-relationships-${p.record_id}` });
    for (const r of rels) relList.append(ownRelationshipItem(r));
    if (!rels.length) relList.append(el('li', { class: 'empty', text: 'Nessuna presa in carico registrata.' }));
    const consentButton = el('button', { type: 'button', class: 'secondary', testid: `consent-open-${p.record_id}`, text: 'Consenso e oscuramento' });
    consentButton.addEventListener('click', () => { clearError(); showConsentPerson(p); });
    return el('li', { class: 'person', testid: `person-${p.record_id}`, dataset: { recordId: p.record_id }, 'aria-labelledby': headingId },
      el('h3', { id: headingId },
        el('span', { class: 'person-name', testid: `person-name-${p.record_id}`, text: fullName(p) }),
        el('span', { class: close ? 'badge close' : 'badge', text: close ? `corrispondenza simile${score}` : 'corrispondenza esatta' })),
      el('dl', { class: 'facts' },
        el('dt', { text: 'Data di nascita' }), el('dd', { testid: `person-birth-${p.record_id}`, text: dayText(p.birth_date) }),
        el('dt', { text: 'Sesso' }), el('dd', { text: p.sex || '—' }),
        el('dt', { text: 'Luogo di nascita' }), el('dd', { text: p.birthplace || '—' }),
        el('dt', { text: 'Codice fiscale' }), el('dd', { testid: `person-cf-${p.record_id}`, text: p.codice_fiscale || '—' }),
        el('dt', { text: 'Scheda' }), el('dd', {}, el('code', { text: p.record_id }))),
      el('h4', { text: 'Prese in carico di questo ente' }),
      relList,
      el('div', { class: 'ask' },
        ...askControls({
          testPrefix: p.record_id,
          onAsk: (purpose, breakGlass) => whoElse({ recordId: p.record_id, relationshipId: null, purpose, breakGlass, subject: fullName(p) }),
        }),
        consentButton));
  }

  function serviceText(r) {
    return r.service_label || labelOf(state.vocab && state.vocab.services, r.service);
  }

  function ownRelationshipItem(r) {
    const parts = [
      serviceText(r),
      r.unit ? `unità ${r.unit}` : null,
      statusText(r.status, r.status_label),
      r.since ? `dal ${monthText(r.since)}` : null,
      `case manager: ${yesNo(r.case_manager)}`,
    ].filter(Boolean);
    if (r.obscured) parts.push('oscurata');
    if (r.published === false) parts.push('non pubblicata');
    return el('li', { class: 'own-rel', testid: `own-relationship-${r.relationship_id}`, text: parts.join(' — ') });
  }

  // ---------------------------------------------------------------------------------------
  // Who else.

  async function whoElse({ recordId, relationshipId, purpose, breakGlass, subject }) {
    const section = $('who-else-section');
    const result = $('who-else-result');
    result.setAttribute('aria-busy', 'true');
    try {
      const answer = await api('POST', `/persons/${seg(recordId)}/who-else`, {
        purpose,
        relationship_id: relationshipId || null,
        break_glass: breakGlass || null,
      });
      renderWhoElse(answer, { recordId, purpose, subject });
      section.hidden = false;
      $('who-else-title').focus();
      setStatus('Risposta ricevuta.');
    } finally {
      result.removeAttribute('aria-busy');
    }
  }

  function renderWhoElse(answer, { recordId, purpose, subject }) {
    const purposes = state.vocab ? state.vocab.purposes : [];
    $('who-else-subject').textContent =
      `Persona: ${subject} — scheda ${answer.record_id || recordId} — finalità: ${labelOf(purposes, purpose)}.`;
    const rows = $('who-else-rows');
    rows.replaceChildren();
    const list = Array.isArray(answer.relationships) ? answer.relationships : [];
    for (const r of list) rows.append(whoElseRow(r));
    $('who-else-table').hidden = list.length === 0;
    $('who-else-empty').hidden = list.length !== 0;
    $('who-else-notice').textContent = typeof answer.notice === 'string' ? answer.notice : '';
    $('who-else-receipt').textContent = typeof answer.receipt === 'string' ? answer.receipt : '—';
  }

  function whoElseRow(r) {
    const band = ['certain', 'probable', 'possible'].includes(r.band) ? r.band : 'unknown';
    const bandText = BAND_TEXT[band] || r.band_label || r.band || '—';
    let service;
    if (r.generalised) {
      const groups = state.vocab ? state.vocab.category_groups : [];
      const group = r.service_label || labelOf(groups, r.category_group);
      service = /generalizzat/i.test(group) ? group : `${group} (generalizzata)`;
    } else {
      service = serviceText(r);
    }
    const cell = (col, label, content) => el('td', { 'data-label': label, 'data-col': col }, content);
    return el('tr', { class: `band-${band}`, 'data-band': band, testid: 'who-else-row' },
      cell('ente', 'Ente', el('span', { title: r.entity_id || '', text: r.entity_name || r.entity_id || '—' })),
      cell('unita', 'Unità', r.unit || '—'),
      cell('servizio', 'Servizio', service || '—'),
      cell('stato', 'Stato', statusText(r.status, r.status_label)),
      cell('dal', 'Dal', monthText(r.since)),
      cell('case-manager', 'Case manager', yesNo(r.case_manager)),
      cell('contatto', 'Punto di contatto', r.contact_label || humanise(r.contact) || '—'),
      cell('corrispondenza', 'Corrispondenza', band === 'possible' ? el('strong', { class: 'band', text: bandText }) : el('span', { class: 'band', text: bandText })));
  }

  // ---------------------------------------------------------------------------------------
  // New intake (nuova segnalata).

  async function registerIntake(event) {
    event.preventDefault();
    const form = $('intake-form');
    await guarded($('intake-submit'), form, async () => {
      const surname = $('intake-surname').value.trim();
      const given = $('intake-given').value.trim();
      if (!surname) throw new PageError('inserire il cognome.', $('intake-surname'));
      if (!given) throw new PageError('inserire i nomi.', $('intake-given'));
      const birth = parseDay($('intake-birth').value);
      if (!birth) throw new PageError('la data di nascita va scritta nel formato GG/MM/AAAA.', $('intake-birth'));
      const service = $('intake-service').value;
      if (!service) throw new PageError('scegliere il servizio.', $('intake-service'));
      const cf = $('intake-cf').value.replace(/\s+/g, '').toUpperCase();
      const body = {
        record_id: null,
        surname,
        given_names: given,
        sex: $('intake-sex').value || null,
        birth_date: birth,
        birthplace: $('intake-birthplace').value.trim() || null,
        codice_fiscale: cf || null,
        service,
        unit: $('intake-unit').value.trim() || null,
      };
      const created = await api('POST', '/intakes', body);
      showIntake(created, `${surname} ${given}`.toUpperCase());
      form.reset();
    });
  }

  function showIntake(created, subject) {
    const recordId = String(created.record_id || '');
    const relationshipId = created.relationship_id ? String(created.relationship_id) : null;
    const where = created.new_record === false ? 'aggiunta alla scheda già presente' : 'nuova scheda';
    $('intake-confirmation-text').textContent = created.queued === false
      ? `Segnalazione registrata (${where}) e pubblicata.`
      : `Segnalazione registrata (${where}): sarà pubblicata alla federazione entro pochi secondi.`;
    $('intake-record-id').textContent = recordId;
    $('intake-relationship-id').textContent = relationshipId || '—';
    $('intake-state').textContent = `${statusText(created.status || 'segnalata')}${created.since ? ` dal ${monthText(created.since)}` : ''}`;
    $('intake-ask').replaceChildren(...askControls({
      testPrefix: 'intake',
      onAsk: (purpose, breakGlass) => whoElse({ recordId, relationshipId, purpose, breakGlass, subject }),
    }));
    $('intake-confirmation').hidden = false;
    setStatus(`Segnalazione registrata con scheda ${recordId}.`);
  }

  // ---------------------------------------------------------------------------------------
  // Consent and obscuring.

  function showConsentPerson(p) {
    state.consentPerson = p;
    $('consent-none').hidden = Boolean(p);
    $('consent-body').hidden = !p;
    $('obscure-list').replaceChildren();
    $('consent-rows').replaceChildren();
    $('consent-table').hidden = true;
    $('consent-empty').hidden = true;
    if (!p) {
      $('consent-person').textContent = '';
      return;
    }
    $('consent-person').textContent = `Persona: ${fullName(p)} — scheda ${p.record_id}`;
    const rels = Array.isArray(p.relationships) ? p.relationships : [];
    for (const r of rels) $('obscure-list').append(obscureItem(r));
    if (!rels.length) $('obscure-list').append(el('li', { class: 'empty', text: 'Nessuna presa in carico registrata.' }));
    $('consent-title').focus();
    guarded(null, null, () => loadConsents(p.record_id));
  }

  function obscureItem(r) {
    const id = uid('obscure');
    const box = el('input', { type: 'checkbox', id, testid: `obscure-${r.relationship_id}`, checked: r.obscured });
    box.addEventListener('change', () => guarded(box, null, async () => {
      const wanted = box.checked;
      try {
        const res = await api('PUT', `/relationships/${seg(r.relationship_id)}/obscured`, { obscured: wanted });
        r.obscured = typeof res.obscured === 'boolean' ? res.obscured : wanted;
        box.checked = r.obscured;
        setStatus(r.obscured
          ? 'Presa in carico oscurata: non sarà mostrata a nessun altro ente.'
          : 'Oscuramento tolto: la presa in carico torna visibile secondo la politica della federazione.');
      } catch (err) {
        box.checked = !wanted;
        throw err;
      }
    }));
    const text = [serviceText(r), r.unit ? `unità ${r.unit}` : null, statusText(r.status, r.status_label)].filter(Boolean).join(' — ');
    return el('li', {}, el('label', { class: 'check', for: id }, box, `Oscura: ${text}`));
  }

  async function loadConsents(recordId) {
    const data = await api('GET', `/persons/${seg(recordId)}/consents`);
    if (!state.consentPerson || state.consentPerson.record_id !== recordId) return;
    const list = Array.isArray(data.consents) ? data.consents : [];
    const rows = $('consent-rows');
    rows.replaceChildren();
    for (const c of list) rows.append(consentRow(c));
    $('consent-table').hidden = list.length === 0;
    $('consent-empty').hidden = list.length !== 0;
  }

  function consentStateText(c) {
    if (c.revoked_at) return 'revocato';
    return CONSENT_STATE_TEXT[c.state] || statusText(c.state);
  }

  function consentRow(c) {
    const v = state.vocab || {};
    const names = (list, codes) => (Array.isArray(codes) ? codes : []).map((code) => labelOf(list, code)).join(', ');
    const revocable = !c.revoked_at && c.state !== 'revoked' && c.state !== 'revocato';
    const actions = el('td', { 'data-label': 'Azioni', 'data-col': 'azioni' });
    if (revocable) {
      const button = el('button', { type: 'button', class: 'danger', testid: `revoke-${c.consent_id}`, text: 'Revoca' });
      button.addEventListener('click', () => guarded(button, null, async () => {
        await api('POST', `/consents/${seg(c.consent_id)}/revoke`, {});
        setStatus('Consenso revocato.');
        if (state.consentPerson) await loadConsents(state.consentPerson.record_id);
      }));
      actions.append(button);
    }
    const stateText = consentStateText(c);
    return el('tr', { testid: `consent-${c.consent_id}`, class: stateText === 'valido' ? '' : 'consent-inactive' },
      el('td', { 'data-label': 'Categorie', 'data-col': 'categorie', text: names(v.services, c.categories) }),
      el('td', { 'data-label': 'Destinatari', 'data-col': 'destinatari', text: names(v.entity_types, c.recipients) }),
      el('td', { 'data-label': 'Finalità', 'data-col': 'finalita', text: names(v.purposes, c.purposes) }),
      el('td', { 'data-label': 'Validità', 'data-col': 'validita', text: `dal ${dayText(c.valid_from)} al ${dayText(c.valid_until)}` }),
      el('td', { 'data-label': 'Espresso da', 'data-col': 'espresso-da', text: labelOf(v.consent_givers, c.given_by) }),
      el('td', { 'data-label': 'Stato', 'data-col': 'stato', testid: `consent-state-${c.consent_id}`, text: stateText }),
      actions);
  }

  async function recordConsent(event) {
    event.preventDefault();
    const form = $('consent-form');
    await guarded($('consent-submit'), form, async () => {
      const p = state.consentPerson;
      if (!p) throw new PageError('scegliere prima la persona.');
      const categories = Array.from($('consent-categories').selectedOptions, (o) => o.value);
      const checked = (name) => Array.from(form.querySelectorAll(`input[name="${name}"]:checked`), (i) => i.value);
      const recipients = checked('recipients');
      const purposes = checked('purposes');
      if (!categories.length) throw new PageError('scegliere almeno una categoria di servizio.', $('consent-categories'));
      if (!recipients.length) throw new PageError('scegliere almeno un destinatario.', form.querySelector('input[name="recipients"]'));
      if (!purposes.length) throw new PageError('scegliere almeno una finalità.', form.querySelector('input[name="purposes"]'));
      const until = parseDay($('consent-valid-until').value);
      if (!until) throw new PageError('la data di fine validità va scritta nel formato GG/MM/AAAA.', $('consent-valid-until'));
      const givenBy = $('consent-given-by').value;
      if (!givenBy) throw new PageError('indicare chi esprime il consenso.', $('consent-given-by'));
      await api('POST', `/persons/${seg(p.record_id)}/consents`, {
        categories,
        recipients,
        purposes,
        valid_from: null,
        valid_until: until,
        given_by: givenBy,
      });
      form.reset();
      setStatus('Consenso registrato.');
      await loadConsents(p.record_id);
    });
  }

  // ---------------------------------------------------------------------------------------
  // Start.

  async function start() {
    $('login-form').addEventListener('submit', login);
    $('logout').addEventListener('click', logout);
    $('alert-close').addEventListener('click', clearError);
    $('search-cf-form').addEventListener('submit', searchByCf);
    $('search-name-form').addEventListener('submit', searchByName);
    $('intake-form').addEventListener('submit', registerIntake);
    $('consent-form').addEventListener('submit', recordConsent);

    const saved = loadSession();
    if (!saved) {
      showLoggedOut();
      await initialRoles();
      return;
    }
    state.session = saved;
    fillSelect($('login-role'), FALLBACK_ROLES);
    showLoggedIn();
    await guarded(null, null, async () => {
      try {
        await checkSession(saved);
        applyVocabulary(await api('GET', '/vocabulary'));
        showLoggedIn();
      } catch (err) {
        if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
          state.session = null;
          forgetSession();
          showLoggedOut();
        }
        throw err;
      }
    });
  }

  document.addEventListener('DOMContentLoaded', () => { start(); });
})();
