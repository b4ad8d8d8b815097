// The page end to end in headless Chromium: it trains, the loss falls, it samples, the
// attention view renders, weights load, and nothing goes to the console as an error.
// Usage: node host/web/e2e.mjs URL WEIGHTS SCREENSHOT
// Prints `key value` lines (train_ms, loss, val, wasm...) and then `name X` for the 20
// names sampled at seed 42 and temperature 0.5 from WEIGHTS, for the caller to compare
// with `microgpt sample`. Exits non-zero on any failed check.
import { chromium } from 'playwright-core';

const [url, weights, screenshot] = process.argv.slice(2);
const fail = (msg) => {
  console.error(`e2e: ${msg}`);
  process.exit(1);
};
if (!url || !weights || !screenshot) fail('usage: e2e.mjs URL WEIGHTS SCREENSHOT');

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const errors = [];
try {
  const page = await browser.newPage({ viewport: { width: 820, height: 1500 } });
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(url);
  await page.waitForSelector('#status[data-ready=true]', { timeout: 30000 });

  // microgpt's job: 1000 steps of one name, seed 42.
  await page.click('#train');
  await page.waitForSelector('#status[data-done=true]', { timeout: 120000 });
  const num = async (sel) => Number(await page.textContent(sel));
  const [trainMs, loss, val] = [await num('#train-ms'), await num('#loss-value'), await num('#val-value')];
  console.log(`train_ms ${trainMs}`);
  console.log(`loss ${loss}`);
  console.log(`val ${val}`);
  if (!(loss < 2.6 && val < 2.7)) fail(`the loss did not fall enough: train ${loss}, val ${val}`);
  const ink = (id) =>
    page.evaluate((id) => {
      const c = document.getElementById(id);
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && (d[i] < 200 || d[i + 1] < 200)) n++;
      return n;
    }, id);
  if ((await ink('curve')) < 1000) fail('the loss curve is nearly blank');
  const trained = await page.$$eval('#names li.name', (li) => li.length);
  if (trained < 20) fail(`only ${trained} names sampled during and after training`);

  // The attention view and the next-letter bars for a name.
  await page.fill('#inspect-name', 'olivia');
  const inked = await ink('attention');
  if (inked < 2000) fail(`the attention view is nearly blank (${inked} pixels)`);
  const bars = await page.$$eval('#probs .bar', (b) => b.length);
  if (bars < 5) fail(`only ${bars} probability bars`);

  // The project's weights, sampled as `microgpt sample --seed 42` does.
  await page.setInputFiles('#weights-file', weights);
  await page.waitForSelector('#weights-status[data-loaded]');
  await page.fill('#seed', '42');
  await page.fill('#count', '20');
  await page.fill('#prefix', '');
  await page.$eval('#temperature', (t) => { t.value = '0.5'; t.dispatchEvent(new Event('input')); });
  await page.click('#sample');
  const names = await page.$$eval('#names li.name', (li) => li.map((l) => l.textContent));
  await page.fill('#inspect-name', 'emma');
  await page.screenshot({ path: screenshot, fullPage: true });
  if (errors.length) fail(`console errors: ${errors.join(' | ')}`);
  for (const n of names) console.log(`name ${n}`);
} finally {
  await browser.close();
}
