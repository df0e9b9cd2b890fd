// The explain page: edits a conversation and its candidate responses, scores them with POST /rank,
// and shows why the model ranks them as it does. Plain script, no dependencies, no network access
// beyond this server (the Content-Security-Policy enforces it). Text from the user or the server is
// only ever set as textContent, never parsed as HTML.
'use strict';
(() => {
  const KEY_STORE = 'armorm.apiKey';
  const ROLES = ['system', 'user', 'assistant'];
  const SLIDER_DEBOUNCE_MS = 250;

  const state = {
    info: null,
    turns: [{ role: 'user', content: '' }],
    responses: [''],
    /** null: the model's own gating; otherwise {objective: weight} sent as the request's weights. */
    weights: null,
    /** The last /rank answer and the responses it scored. */
    ranked: null,
    scoredResponses: [],
    sequence: 0,
    lastFragment: null,
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === 'text') e.textContent = v;
      else if (k === 'class') e.className = v;
      else e.setAttribute(k, v);
    }
    e.append(...children);
    return e;
  }

  const fixed = (x, digits) => (x >= 0 ? '+' : '') + x.toFixed(digits);
  const scoreText = (x) => x.toFixed(4);

  // ---- the API -------------------------------------------------------------------------------

  class ApiFailure extends Error {
    constructor(status, code, message, retryAfter) {
      super(message);
      this.status = status;
      this.code = code;
      this.retryAfter = retryAfter;
    }
  }

  async function api(path, body) {
    const headers = {};
    const key = sessionStorage.getItem(KEY_STORE);
    if (key) headers.Authorization = 'Bearer ' + key;
    const init = { method: body === undefined ? 'GET' : 'POST', headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new ApiFailure(0, 'network', String(e.message || e));
    }
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const error = (data && data.error) || {};
      throw new ApiFailure(response.status, error.code || 'http_' + response.status,
        error.message || response.statusText, response.headers.get('Retry-After'));
    }
    return data;
  }

  /** What went wrong, in words, with the server's own code and message. */
  function describe(err) {
    if (!(err instanceof ApiFailure)) return `The page failed: ${err.message}`;
    const said = `${err.code}: ${err.message}`;
    switch (err.status) {
      case 0: return `The server could not be reached (${err.message}). Is armorm still running?`;
      case 401: return `The server needs a valid API key (401 ${said}). Enter it above.`;
      case 413: return `The input is too large for this server (413 ${said}).`;
      case 422: return `The server refused this input (422 ${said}).`;
      case 429: return `The server is busy (429 ${said}).` + (err.retryAfter ? ` Try again in ${err.retryAfter} s.` : '');
      case 503: return `The server cannot score right now (503 ${said}).` + (err.retryAfter ? ` Try again in ${err.retryAfter} s.` : '');
      default: return `The server answered ${err.status} (${said}).`;
    }
  }

  function setPhase(phase, message) {
    document.body.dataset.phase = phase;
    $('status').textContent = message || '';
  }

  function showError(err) {
    const box = $('error');
    box.textContent = describe(err);
    box.dataset.status = err instanceof ApiFailure ? String(err.status) : '';
    box.hidden = false;
    setPhase('error', '');
    if (err instanceof ApiFailure && err.status === 401) askForKey();
  }

  function clearError() {
    $('error').hidden = true;
    $('error').textContent = '';
  }

  function askForKey() {
    $('key-form').hidden = false;
    $('key-input').focus();
  }

  // ---- the input editor ----------------------------------------------------------------------

  function renderInputs() {
    const turns = $('turns');
    turns.replaceChildren();
    state.turns.forEach((turn, i) => {
      const role = el('select', { id: `turn-${i}-role`, 'aria-label': `Turn ${i + 1} role` });
      // A link may carry a role the server will refuse: show it as it is, so the error makes sense.
      for (const r of ROLES.includes(turn.role) ? ROLES : [...ROLES, turn.role]) role.append(el('option', { value: r, text: r }));
      role.value = turn.role;
      role.addEventListener('change', () => { turn.role = role.value; });
      const text = el('textarea', { id: `turn-${i}`, rows: '3', 'aria-label': `Turn ${i + 1} text` });
      text.value = turn.content;
      text.addEventListener('input', () => { turn.content = text.value; });
      const remove = el('button', { type: 'button', class: 'small', text: 'Remove', 'aria-label': `Remove turn ${i + 1}` });
      remove.disabled = state.turns.length === 1;
      remove.addEventListener('click', () => { state.turns.splice(i, 1); renderInputs(); });
      turns.append(el('div', { class: 'turn' }, el('div', { class: 'label' }, role), text, remove));
    });
    const responses = $('responses');
    responses.replaceChildren();
    state.responses.forEach((content, i) => {
      const text = el('textarea', { id: `response-${i}`, rows: '3', 'aria-label': `Response ${i + 1}` });
      text.value = content;
      text.addEventListener('input', () => { state.responses[i] = text.value; });
      const remove = el('button', { type: 'button', class: 'small', text: 'Remove', 'aria-label': `Remove response ${i + 1}` });
      remove.disabled = state.responses.length === 1;
      remove.addEventListener('click', () => { state.responses.splice(i, 1); renderInputs(); });
      responses.append(el('div', { class: 'response' }, el('div', { class: 'label', text: `Response ${i + 1}` }), text, remove));
    });
  }

  /** A pasted `messages` array (or {"messages": [...]}): a final assistant turn becomes the response. */
  function applyPasted(text) {
    let value = JSON.parse(text);
    if (value && !Array.isArray(value) && Array.isArray(value.messages)) value = value.messages;
    if (!Array.isArray(value) || value.length === 0) throw new Error('expected a non-empty JSON array of {"role", "content"} messages');
    value.forEach((m, i) => {
      if (!m || typeof m.role !== 'string' || typeof m.content !== 'string') {
        throw new Error(`message ${i} needs a string "role" and a string "content"`);
      }
    });
    const turns = value.map((m) => ({ role: m.role, content: m.content }));
    if (turns.length > 1 && turns[turns.length - 1].role === 'assistant') {
      state.responses = [turns.pop().content];
    }
    state.turns = turns;
    renderInputs();
  }

  // ---- the shareable link: the whole input in the fragment ---------------------------------

  function toBase64Url(bytes) {
    let binary = '';
    for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function fromBase64Url(text) {
    const binary = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
    return Uint8Array.from(binary, (c) => c.charCodeAt(0));
  }

  async function streamThrough(bytes, transform) {
    return new Uint8Array(await new Response(new Blob([bytes]).stream().pipeThrough(transform)).arrayBuffer());
  }

  /** `z` + base64url(deflate-raw(JSON)), or `j` + the JSON percent-encoded where streams are missing. */
  async function encodeFragment() {
    const json = JSON.stringify({ t: state.turns.map((t) => [t.role, t.content]), r: state.responses, w: state.weights });
    if (typeof CompressionStream === 'function') {
      return 'z' + toBase64Url(await streamThrough(new TextEncoder().encode(json), new CompressionStream('deflate-raw')));
    }
    return 'j' + encodeURIComponent(json);
  }

  async function decodeFragment(fragment) {
    let json;
    if (fragment.startsWith('z')) {
      json = new TextDecoder().decode(await streamThrough(fromBase64Url(fragment.slice(1)), new DecompressionStream('deflate-raw')));
    } else if (fragment.startsWith('j')) {
      json = decodeURIComponent(fragment.slice(1));
    } else {
      throw new Error('this link holds no conversation (its part after # starts with neither z nor j)');
    }
    const v = JSON.parse(json);
    const pair = (t) => Array.isArray(t) && t.length === 2 && typeof t[0] === 'string' && typeof t[1] === 'string';
    if (!v || !Array.isArray(v.t) || !v.t.every(pair) || v.t.length === 0) throw new Error('the link\'s "t" must be [[role, text], ...]');
    if (!Array.isArray(v.r) || v.r.length === 0 || !v.r.every((r) => typeof r === 'string')) throw new Error('the link\'s "r" must be a list of response texts');
    const weights = v.w === undefined || v.w === null ? null : v.w;
    if (weights !== null && (typeof weights !== 'object' || !Object.values(weights).every((x) => typeof x === 'number'))) {
      throw new Error('the link\'s "w" must map objective names to numbers');
    }
    state.turns = v.t.map(([role, content]) => ({ role, content }));
    state.responses = v.r.slice();
    state.weights = weights;
  }

  async function writeFragment() {
    const fragment = await encodeFragment();
    state.lastFragment = fragment;
    history.replaceState(null, '', '#' + fragment);
  }

  async function loadFragment() {
    const fragment = location.hash.slice(1);
    if (!fragment || fragment === state.lastFragment) return;
    state.lastFragment = fragment;
    try {
      await decodeFragment(fragment);
    } catch (e) {
      showError(new Error(`cannot read this link: ${e.message}`));
      return;
    }
    renderInputs();
    await score();
  }

  // ---- scoring -------------------------------------------------------------------------------

  async function score() {
    const sequence = ++state.sequence;
    const body = {
      messages: state.turns.map((t) => ({ role: t.role, content: t.content })),
      responses: state.responses.slice(),
    };
    if (state.weights) body.weights = state.weights;
    clearError();
    setPhase('scoring', 'Scoring…');
    let ranked;
    try {
      ranked = await api('/rank', body);
    } catch (e) {
      if (sequence === state.sequence) showError(e);
      return;
    }
    // A slider moved again while this was in flight: only the newest answer is shown.
    if (sequence !== state.sequence) return;
    state.ranked = ranked;
    state.scoredResponses = body.responses;
    renderResults();
    await writeFragment();
    const n = (ranked.results || ranked.scores).length;
    setPhase('scored', isPairwise() ? `Compared ${n} responses pairwise (${ranked.comparisons} passes).`
      : `Scored ${n} response${n === 1 ? '' : 's'}.`);
  }

  // ---- results -------------------------------------------------------------------------------

  const objectives = () => (state.info && state.info.objectives) || [];
  const hasBreakdown = () => Boolean(state.ranked && state.ranked.results && state.ranked.results[0].rewards);
  const isPairwise = () => Boolean(state.info && state.info.head === 'pairwise');

  function contributions(result) {
    return result.rewards.map((r, j) => r * result.coefficients[j]);
  }

  /** One bar on a shared scale: positive right of the centre line, negative left, labelled. */
  function bar(value, scale, label) {
    const side = value >= 0 ? 'pos' : 'neg';
    const width = scale > 0 ? Math.min(50, (50 * Math.abs(value)) / scale) : 0;
    const fill = el('span', { class: `fill ${side}` });
    fill.style.width = width + '%';
    const text = el('span', { class: `val ${side === 'pos' ? 'neg' : 'pos'}`, text: fixed(value, 3) });
    return el('div', { class: 'bar', role: 'img', 'aria-label': `${label}: ${fixed(value, 4)}` }, fill, text);
  }

  function bars(container, columns, rows) {
    container.replaceChildren();
    container.style.setProperty('--cols', String(columns.length));
    container.append(el('div', { class: 'head', text: 'objective' }));
    for (const c of columns) container.append(el('div', { class: 'head', text: c.title }));
    const scales = columns.map((_, k) => Math.max(...rows.map((r) => Math.abs(r.values[k])), 1e-12));
    for (const row of rows) {
      container.append(el('div', { class: 'name', text: row.name }));
      row.values.forEach((v, k) => container.append(bar(v, columns[k].scale || scales[k], `${row.name} ${columns[k].title}`)));
    }
  }

  function words(name, contribution) {
    const how = contribution >= 0 ? 'pushed the score up' : 'pulled the score down';
    return `${name} ${how} by ${Math.abs(contribution).toFixed(3)}`;
  }

  function excerpt(text) {
    const flat = text.replace(/\s+/g, ' ').trim();
    return flat.length > 90 ? flat.slice(0, 89) + '…' : flat;
  }

  function customRanking(results) {
    return results.map((_, i) => i).sort((a, b) => results[b].custom_score - results[a].custom_score || a - b);
  }

  /** A pairwise model's answer as what it is: preferences between responses, no score of one alone. */
  function renderPairwise() {
    const { scores, preferences, ranking } = state.ranked;
    const list = $('ranking-list');
    list.replaceChildren();
    ranking.forEach((i) => {
      list.append(el('li', { 'data-index': String(i) },
        el('strong', { text: `Response ${i + 1}` }), ': beats the others with mean probability ',
        el('span', { class: 'score', id: `score-${i}`, text: scores[i].toFixed(4) }),
        el('div', { class: 'muted', text: excerpt(state.scoredResponses[i] || '') })));
    });
    const table = el('table', { id: 'preferences', class: 'preferences' });
    const head = el('tr', {}, el('th', { text: 'P(row beats column)' }));
    preferences.forEach((_, j) => head.append(el('th', { text: `${j + 1}` })));
    table.append(head);
    preferences.forEach((row, i) => {
      const tr = el('tr', {}, el('th', { text: `Response ${i + 1}` }));
      row.forEach((p, j) => tr.append(el('td', { id: `p-${i}-${j}`, text: i === j ? '—' : p.toFixed(4) })));
      table.append(tr);
    });
    $('pairwise-table').replaceChildren(table);
    const note = $('no-breakdown');
    note.hidden = false;
    note.textContent = 'This is a pairwise preference model: it reads two responses at a time and says which it prefers '
      + '(both orders, averaged, which cancels its bias for the first). Each response\'s number is its mean probability '
      + 'of beating the others; the table gives every pair. It scores no response alone, so there is no breakdown, '
      + 'gating or re-weighting to show.';
  }

  function renderRanking() {
    $('pairwise-table').replaceChildren();
    if (isPairwise()) return renderPairwise();
    const { results, ranking } = state.ranked;
    const custom = state.weights ? customRanking(results) : null;
    const list = $('ranking-list');
    list.replaceChildren();
    ranking.forEach((i) => {
      const r = results[i];
      const item = el('li', { 'data-index': String(i) },
        el('strong', { text: `Response ${i + 1}` }), ': score ',
        el('span', { class: 'score', id: `score-${i}`, text: scoreText(r.score) }));
      if (custom) {
        item.append(' · custom ', el('span', { class: 'custom', id: `custom-${i}`, text: scoreText(r.custom_score) }),
          ` (custom rank ${custom.indexOf(i) + 1})`);
      }
      item.append(el('div', { class: 'muted', text: excerpt(state.scoredResponses[i] || '') }));
      list.append(item);
    });
    const note = $('no-breakdown');
    note.hidden = hasBreakdown();
    note.textContent = hasBreakdown() ? '' : 'This model has a single-score (Bradley-Terry) head: it gives one score per '
      + 'response and no objectives, so there is no breakdown, gating or re-weighting to show; only scores and ranks.';
  }

  function renderGating() {
    const first = state.ranked.results[0];
    const rows = objectives().map((name, j) => ({ name, values: [first.gating[j]] }))
      .sort((a, b) => b.values[0] - a.values[0]);
    const container = $('gating-bars');
    container.classList.add('gating');
    bars(container, [{ title: 'weight', scale: Math.max(...first.gating) * 2 }], rows);
  }

  function sliderBound(coefficients) {
    const largest = Math.max(...coefficients.map(Math.abs), ...Object.values(state.weights || {}).map(Math.abs));
    return Math.max(1, Math.ceil(largest * 2) / 2);
  }

  /** Built once per model; values follow the model's coefficients until the user moves one. */
  function renderSliders() {
    const coefficients = state.ranked.results[0].coefficients;
    const container = $('sliders');
    const bound = sliderBound(coefficients);
    if (container.childElementCount !== objectives().length) {
      container.replaceChildren();
      objectives().forEach((name, j) => {
        const id = `weight-${j}`;
        const input = el('input', { type: 'range', id, step: '0.01', 'data-objective': name });
        const output = el('output', { for: id, id: `${id}-value` });
        input.addEventListener('input', () => sliderMoved(j, input, output));
        container.append(el('div', { class: 'slider' }, el('label', { for: id, text: name }), input, output));
      });
    }
    objectives().forEach((name, j) => {
      const input = $(`weight-${j}`);
      input.min = String(-bound);
      input.max = String(bound);
      const value = state.weights ? (state.weights[name] ?? 0) : coefficients[j];
      if (document.activeElement !== input) input.value = String(value);
      $(`weight-${j}-value`).textContent = Number(input.value).toFixed(2);
    });
    $('weights-state').textContent = state.weights
      ? 'Custom weights: the ranking above also shows the custom score.'
      : 'The model\'s own coefficients for this prompt.';
    $('reset-weights').disabled = !state.weights;
  }

  let sliderTimer = null;

  function sliderMoved(j, input, output) {
    output.textContent = Number(input.value).toFixed(2);
    if (!state.weights) {
      const coefficients = state.ranked.results[0].coefficients;
      state.weights = Object.fromEntries(objectives().map((name, k) => [name, Number($(`weight-${k}`).value ?? coefficients[k])]));
    }
    state.weights[objectives()[j]] = Number(input.value);
    // The shown custom scores are stale from now until the debounced request answers.
    setPhase('scoring', 'Re-scoring with your weights…');
    clearTimeout(sliderTimer);
    sliderTimer = setTimeout(score, SLIDER_DEBOUNCE_MS);
  }

  function renderCompare() {
    const results = state.ranked.results;
    const section = $('compare');
    section.hidden = results.length < 2;
    if (results.length < 2) return;
    const a = $('compare-a');
    const b = $('compare-b');
    const keep = [Number(a.value), Number(b.value)];
    for (const select of [a, b]) {
      select.replaceChildren(...results.map((_, i) => el('option', { value: String(i), text: `Response ${i + 1}` })));
    }
    const valid = keep.every((i) => Number.isInteger(i) && i < results.length) && keep[0] !== keep[1];
    const [first, second] = valid ? keep : [state.ranked.ranking[0], state.ranked.ranking[1]];
    a.value = String(first);
    b.value = String(second);
    const ca = contributions(results[first]);
    const cb = contributions(results[second]);
    const rows = objectives().map((name, j) => ({ name, values: [ca[j] - cb[j]] }))
      .sort((x, y) => Math.abs(y.values[0]) - Math.abs(x.values[0]));
    const gap = results[first].score - results[second].score;
    const decided = rows.slice(0, 3).map((r) => `${r.name} (${fixed(r.values[0], 3)}, favours response ${r.values[0] >= 0 ? first + 1 : second + 1})`);
    $('compare-summary').textContent = `Response ${first + 1} scores ${Math.abs(gap).toFixed(4)} ${gap >= 0 ? 'higher' : 'lower'} `
      + `than response ${second + 1}. The differences of contributions below sum to that gap; the objectives that `
      + `decided it: ${decided.join('; ')}.`;
    bars($('compare-bars'), [{ title: `response ${first + 1} − response ${second + 1}` }], rows);
  }

  function renderCards() {
    const { results, ranking } = state.ranked;
    const cards = $('cards');
    cards.replaceChildren();
    const all = results.map(contributions);
    const scales = [
      Math.max(...results.flatMap((r) => r.rewards.map(Math.abs)), 1e-12),
      Math.max(...results.flatMap((r) => r.coefficients.map(Math.abs)), 1e-12),
      Math.max(...all.flat().map(Math.abs), 1e-12),
    ];
    results.forEach((r, i) => {
      const c = all[i];
      const rows = objectives().map((name, j) => ({ name, values: [r.rewards[j], r.coefficients[j], c[j]] }))
        .sort((x, y) => Math.abs(y.values[2]) - Math.abs(x.values[2]));
      const card = el('section', { class: 'card', id: `card-${i}`, 'aria-label': `Response ${i + 1} breakdown` });
      card.append(el('h2', { text: `Response ${i + 1}: rank ${ranking.indexOf(i) + 1} of ${results.length}, score ${scoreText(r.score)}` }));
      card.append(el('p', { class: 'muted', text: excerpt(state.scoredResponses[i] || '') }));
      card.append(el('ul', { class: 'words' }, ...rows.slice(0, 3).map((row) => el('li', { text: words(row.name, row.values[2]) }))));
      card.append(el('p', { class: 'legend' }, 'Sorted by |contribution| (coefficient × reward). ',
        el('span', { class: 'pos', text: 'Solid bars right: positive' }), '; ',
        el('span', { class: 'neg', text: 'hatched bars left: negative' }), '.'));
      const grid = el('div', { class: 'bars' });
      bars(grid, [{ title: 'reward', scale: scales[0] }, { title: 'coefficient', scale: scales[1] }, { title: 'contribution', scale: scales[2] }], rows);
      card.append(grid);
      cards.append(card);
    });
  }

  function renderResults() {
    $('results').hidden = false;
    renderRanking();
    const explained = hasBreakdown();
    for (const id of ['gating', 'weights', 'compare', 'cards']) $(id).hidden = !explained;
    if (!explained) return;
    renderGating();
    renderSliders();
    renderCompare();
    renderCards();
  }

  // ---- start ---------------------------------------------------------------------------------

  async function readModel() {
    try {
      state.info = await api('/info');
    } catch (e) {
      showError(e);
      return false;
    }
    const i = state.info;
    const kind = i.head === 'armo' ? `${i.objectives.length} objectives`
      : i.head === 'pairwise' ? 'pairwise preference model' : 'single score (Bradley-Terry)';
    $('model-line').textContent = `Model ${i.model_id} · ${kind} · ${i.dtype} on ${i.device} · armorm ${i.version}`;
    $('key-form').hidden = true;
    return true;
  }

  async function start() {
    renderInputs();
    $('add-turn').addEventListener('click', () => {
      const last = state.turns[state.turns.length - 1];
      state.turns.push({ role: last && last.role === 'user' ? 'assistant' : 'user', content: '' });
      renderInputs();
      $(`turn-${state.turns.length - 1}`).focus();
    });
    $('add-response').addEventListener('click', () => {
      state.responses.push('');
      renderInputs();
      $(`response-${state.responses.length - 1}`).focus();
    });
    $('paste-apply').addEventListener('click', () => {
      try {
        applyPasted($('paste-input').value);
        clearError();
        setPhase(document.body.dataset.phase, 'Messages loaded; press Score.');
      } catch (e) {
        showError(new Error(`cannot use the pasted messages: ${e.message}`));
      }
    });
    $('score').addEventListener('click', score);
    $('main').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) score();
    });
    $('reset-weights').addEventListener('click', () => {
      state.weights = null;
      renderResults();
      writeFragment();
      $('score').focus();
    });
    $('compare-a').addEventListener('change', renderCompare);
    $('compare-b').addEventListener('change', renderCompare);
    $('copy-link').addEventListener('click', async () => {
      await writeFragment();
      try {
        await navigator.clipboard.writeText(location.href);
        setPhase(document.body.dataset.phase, 'Link copied: it reproduces this view.');
      } catch (_) {
        setPhase(document.body.dataset.phase, `Link: ${location.href}`);
      }
    });
    $('key-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      sessionStorage.setItem(KEY_STORE, $('key-input').value);
      $('key-input').value = '';
      clearError();
      if (await readModel()) await (location.hash.length > 1 ? (state.lastFragment = null, loadFragment()) : Promise.resolve());
    });
    window.addEventListener('hashchange', loadFragment);
    setPhase('loading', '');
    if (!(await readModel())) return;
    setPhase('ready', '');
    await loadFragment();
  }

  start();
})();
