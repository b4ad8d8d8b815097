// The page: trains microgpt in WebAssembly, draws the loss as it falls, samples names as
// it goes, and shows where each head looks. The model lives in microgpt_web.wasm; see
// host/web/src/lib.rs for the functions called here.

const $ = (id) => document.getElementById(id);
const enc = new TextEncoder();
const dec = new TextDecoder();

const { instance } = await WebAssembly.instantiateStreaming(fetch('microgpt_web.wasm'), {});
const wasm = instance.exports;

/** Writes bytes into the module's input buffer. */
function put(bytes) {
  const at = wasm.mg_input(bytes.length);
  new Uint8Array(wasm.memory.buffer, at, bytes.length).set(bytes);
}

/** A copy of the module's last output. */
function output() {
  return new Uint8Array(wasm.memory.buffer, wasm.mg_output(), wasm.mg_output_len()).slice();
}

/** Throws the module's message when a call failed. */
function check(status) {
  if (status < 0) throw new Error(dec.decode(output()));
}

function showError(where, e) {
  where.textContent = e.message;
  where.classList.add('error');
}

// ---- training ----------------------------------------------------------------------

const curve = { train: [], val: [], steps: 1 };

function drawCurve() {
  const c = $('curve');
  const g = c.getContext('2d');
  g.clearRect(0, 0, c.width, c.height);
  const pts = curve.train.concat(curve.val);
  if (pts.length === 0) return;
  const ys = pts.map((p) => p[1]);
  const [y0, y1] = [Math.min(...ys) - 0.05, Math.max(...ys) + 0.05];
  const [left, bottom] = [44, 22];
  const x = (s) => left + ((c.width - left - 8) * s) / curve.steps;
  const y = (l) => 6 + ((c.height - bottom - 6) * (y1 - l)) / (y1 - y0);
  g.strokeStyle = '#ccd';
  g.fillStyle = '#556';
  g.font = '11px system-ui';
  for (let i = 0; i <= 4; i++) {
    const l = y0 + ((y1 - y0) * i) / 4;
    g.beginPath();
    g.moveTo(left, y(l));
    g.lineTo(c.width - 8, y(l));
    g.stroke();
    g.fillText(l.toFixed(2), 4, y(l) + 4);
  }
  g.fillText('step ' + curve.steps, c.width - 70, c.height - 6);
  const line = (data, color) => {
    g.strokeStyle = color;
    g.lineWidth = 2;
    g.beginPath();
    data.forEach(([s, l], i) => (i ? g.lineTo(x(s), y(l)) : g.moveTo(x(s), y(l))));
    g.stroke();
  };
  line(curve.train, '#4a67d6');
  line(curve.val, '#e0792b');
}

/** The mean of the training losses over the last `n` steps. */
function recentLoss(n) {
  const last = curve.train.filter(([s]) => s > curve.train.at(-1)[0] - n);
  return last.reduce((a, [, l]) => a + l, 0) / last.length;
}

function addNames(label, text) {
  const list = $('names');
  if (label) {
    const li = document.createElement('li');
    li.className = 'step';
    li.textContent = label;
    list.append(li);
  }
  for (const name of text.split('\n').filter((n, i, all) => i < all.length - 1)) {
    const li = document.createElement('li');
    li.className = 'name';
    li.textContent = name;
    list.append(li);
  }
}

function sampleText(count) {
  put(enc.encode($('prefix').value));
  check(wasm.mg_sample(Number($('seed').value), count, Number($('temperature').value), 0, 1));
  return dec.decode(output());
}

async function train() {
  const status = $('status');
  status.classList.remove('error');
  const steps = Number($('steps').value);
  const batch = Number($('batch').value);
  put(enc.encode($('words').value));
  check(wasm.mg_train_start(Number($('train-seed').value), steps, batch));
  Object.assign(curve, { train: [], val: [], steps });
  $('names').replaceChildren();
  $('train').disabled = true;
  const evalEvery = Math.max(1, Math.round(steps / 10));
  const sampleEvery = Math.max(1, Math.round(steps / 4));
  let trainMs = 0;
  let done = 0;
  while (done < steps) {
    const frame = performance.now();
    while (done < steps && performance.now() - frame < 30) {
      const chunk = Math.min(10, steps - done);
      const t = performance.now();
      const loss = wasm.mg_train(chunk);
      trainMs += performance.now() - t;
      if (Number.isNaN(loss)) check(-1);
      done = wasm.mg_steps_done();
      curve.train.push([done, loss]);
      if (done % evalEvery < chunk || done === steps) curve.val.push([done, wasm.mg_val_loss()]);
      if (done % sampleEvery < chunk && done < steps) {
        check(wasm.mg_publish());
        addNames(`after ${done} steps`, sampleText(8));
      }
    }
    drawCurve();
    const rate = (done / trainMs) * 1000;
    status.textContent = `step ${done}/${steps} | loss ${recentLoss(100).toFixed(4)} | ${rate.toFixed(0)} steps/s`;
    await new Promise(requestAnimationFrame);
  }
  check(wasm.mg_publish());
  const val = curve.val.at(-1)[1];
  status.innerHTML =
    `done: ${steps} steps in <span id="train-ms">${trainMs.toFixed(1)}</span> ms ` +
    `(${((steps / trainMs) * 1000).toFixed(0)} steps/s) | loss <span id="loss-value">${recentLoss(100).toFixed(4)}</span>` +
    ` | val <span id="val-value">${val.toFixed(4)}</span>`;
  status.dataset.done = 'true';
  addNames(`after ${steps} steps`, sampleText(Number($('count').value)));
  $('train').disabled = false;
  inspect();
}

// ---- looking inside ----------------------------------------------------------------

let vocab = [];
let selected = -1;

function inspect() {
  const name = $('inspect-name').value;
  check(wasm.mg_vocab());
  vocab = [...dec.decode(output())];
  put(enc.encode(name));
  try {
    check(wasm.mg_inspect());
  } catch (e) {
    $('probs-title').textContent = e.message;
    return;
  }
  const bytes = output();
  const f = new Float32Array(bytes.buffer, 0, bytes.length / 4);
  const [n, heads, v] = [f[0], f[1], f[2]];
  const tokens = ['·', ...name].slice(0, n);
  const per = heads * n + v;
  const at = (pos) => 3 + pos * per;
  if (selected < 0 || selected >= n) selected = n - 1;

  const c = $('attention');
  const g = c.getContext('2d');
  g.fillStyle = '#fff';
  g.fillRect(0, 0, c.width, c.height);
  const cell = Math.min(22, Math.floor((c.width / heads - 30) / n), Math.floor((c.height - 40) / n));
  g.font = '11px ui-monospace, monospace';
  for (let h = 0; h < heads; h++) {
    const x0 = h * (c.width / heads) + 20;
    g.fillStyle = '#334';
    g.fillText(`head ${h + 1}`, x0, 12);
    for (let q = 0; q < n; q++) {
      g.fillStyle = q === selected ? '#e0792b' : '#556';
      g.fillText(tokens[q], x0 - 14, 20 + q * cell + cell * 0.7);
      for (let k = 0; k <= q; k++) {
        const a = f[at(q) + h * n + k];
        g.fillStyle = `rgba(74, 103, 214, ${a})`;
        g.fillRect(x0 + k * cell, 20 + q * cell, cell - 1, cell - 1);
      }
    }
    for (let k = 0; k < n; k++) {
      g.fillStyle = '#556';
      g.fillText(tokens[k], x0 + k * cell + cell * 0.3, 20 + n * cell + 12);
    }
  }

  const probs = f.slice(at(selected) + heads * n, at(selected) + per);
  const next = selected + 1 < n ? tokens[selected + 1] : null;
  $('probs-title').textContent =
    `After "${tokens.slice(1, selected + 1).join('')}", the next letter${next ? ` (here "${next}")` : ''}:`;
  const rows = [...probs].map((p, i) => [i < vocab.length ? vocab[i] : 'end', p]);
  rows.sort((a, b) => b[1] - a[1]);
  const box = $('probs');
  box.replaceChildren();
  for (const [ch, p] of rows.slice(0, 12)) {
    const label = document.createElement('span');
    label.textContent = ch;
    const bar = document.createElement('span');
    bar.className = 'bar' + (ch === next ? ' next' : '');
    bar.style.width = `${(100 * p) / rows[0][1]}%`;
    const value = document.createElement('span');
    value.textContent = `${(100 * p).toFixed(1)}%`;
    box.append(label, bar, value);
  }
}

$('attention').addEventListener('click', (ev) => {
  const rect = ev.target.getBoundingClientRect();
  const y = ((ev.clientY - rect.top) / rect.height) * ev.target.height;
  const n = Math.min($('inspect-name').value.length + 1, 16);
  const cell = Math.min(22, Math.floor(($('attention').width / 4 - 30) / n), Math.floor((ev.target.height - 40) / n));
  selected = Math.max(0, Math.min(n - 1, Math.floor((y - 20) / cell)));
  inspect();
});

// ---- wiring ------------------------------------------------------------------------

$('temperature').addEventListener('input', () => ($('temperature-value').value = $('temperature').value));
$('train').addEventListener('click', () => train().catch((e) => showError($('status'), e)));
$('sample').addEventListener('click', () => {
  try {
    $('names').replaceChildren();
    addNames('', sampleText(Number($('count').value)));
  } catch (e) {
    showError($('status'), e);
  }
});
$('inspect-name').addEventListener('input', () => {
  selected = -1;
  inspect();
});
$('weights-file').addEventListener('change', async () => {
  const file = $('weights-file').files[0];
  if (!file) return;
  try {
    put(new Uint8Array(await file.arrayBuffer()));
    check(wasm.mg_load_weights());
    check(wasm.mg_vocab());
    $('weights-status').textContent = `loaded ${file.name}: ${file.size} bytes, characters "${dec.decode(output())}"`;
    $('weights-status').dataset.loaded = file.name;
    inspect();
  } catch (e) {
    showError($('weights-status'), e);
  }
});
$('save').addEventListener('click', () => {
  try {
    check(wasm.mg_save_weights());
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([output()], { type: 'application/octet-stream' }));
    a.download = 'microgpt.bin';
    a.click();
  } catch (e) {
    showError($('weights-status'), e);
  }
});
const words = $('words');
words.addEventListener('dragover', (ev) => ev.preventDefault());
words.addEventListener('drop', async (ev) => {
  ev.preventDefault();
  const file = ev.dataTransfer.files[0];
  if (file) words.value = await file.text();
});

words.value = await (await fetch('names.txt')).text();
$('status').textContent = `ready: ${words.value.split('\n').filter((l) => l.trim()).length} names`;
$('status').dataset.ready = 'true';
