// The browser side of tests/test_web_frontend.py: one browser, one page per renderer (classic,
// then Nodes 2.0 where the frontend has it); reports what it saw as JSON on stdout.
const { chromium } = require('playwright-core');
const fs = require('fs');
const [url, chromiumPath, workflowsJson, extName, shotDir, tag, files, vueCaption] = process.argv.slice(2);
const tiny = JSON.parse(files);
const out = { requests: [], errors: [], warnings: [], renderers: {}, times: {} };
let collecting = false;  // warnings while the pack works, not the frontend's own at boot
const WAIT = { timeout: 60000 };
const t0 = Date.now();
const mark = (name) => { out.times[name] = (Date.now() - t0) / 1000; };

async function open(page) {
  await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 60000 });
  await page.waitForFunction((n) => window.app?.graph && window.app?.canvas
    && window.LiteGraph?.registered_node_types?.W2SDReflectiveKSampler
    && window.app.extensions?.some((e) => e.name === n), extName, WAIT);
}

// Page-side helpers, installed once per page load: polling instead of fixed sleeps.
const HELPERS = () => {
  window.w2sdUntil = async (cond, ms = 10000) => {
    const end = Date.now() + ms;
    while (Date.now() < end) { const v = cond(); if (v) return v; await new Promise((r) => requestAnimationFrame(r)); }
    return cond();
  };
  window.w2sdSet = (n, k, v) => n.widgets.find((w) => w.name === k).setValue(v, { e: undefined, node: n, canvas: app.canvas });
  // removing the nodes one by one, not LGraph.clear(): clear() starts the node ids again at 1, and
  // Nodes 2.0 (1.27.10, 1.35.9) then lays a new node out with the size of the old node of that id
  window.w2sdClear = () => { for (const n of [...app.graph.nodes]) app.graph.remove(n); };
  // each node's box in canvas units as the renderer lays it out (title included): the Vue
  // component's where Nodes 2.0 draws the node, else LiteGraph's pos/size
  window.w2sdBoxes = () => {
    const th = LiteGraph.NODE_TITLE_HEIGHT;
    const nodes = app.graph.nodes.filter((n) => !n.collapsed);
    const rect = (n) => { const r = document.querySelector(`[data-node-id="${n.id}"]`)?.getBoundingClientRect(); return r && r.width ? r : null; };
    const drawn = nodes.map((n) => [n, rect(n)]).filter(([, r]) => r);
    if (drawn.length < nodes.length || !drawn.length) {
      return nodes.map((n) => [n.id, n.type, n.pos[0], n.pos[1] - th, n.size[0], n.size[1] + th, 'lg']);
    }
    // the DOM's own scale (Nodes 2.0 may apply the canvas transform a frame later than ds says):
    // from the two nodes furthest apart, then every box relative to the first, whose top is its pos
    let [a, b] = [drawn[0], drawn[0]];
    for (const d of drawn) { if (d[0].pos[0] < a[0].pos[0]) a = d; if (d[0].pos[0] > b[0].pos[0]) b = d; }
    const k = b[0].pos[0] !== a[0].pos[0] ? (b[1].left - a[1].left) / (b[0].pos[0] - a[0].pos[0]) : app.canvas.ds.scale;
    const [ref, rr] = a;
    return drawn.map(([n, r]) => [n.id, n.type, ref.pos[0] + (r.left - rr.left) / k, ref.pos[1] - th + (r.top - rr.top) / k,
                                  r.width / k, r.height / k, 'dom']);
  };
  window.w2sdMake = (t, x, y) => { const n = LiteGraph.createNode(t); n.pos = [x, y]; app.graph.add(n); return n; };
  // The cost as the user sees it: the caption element (DOM widget), whether it is in the page,
  // visible, and inside the node's box (the Vue component's where Nodes 2.0 draws the node).
  window.w2sdCaptions = () => app.graph.nodes.filter((n) => n.w2sdRefresh).map((n) => {
    n.w2sdRefresh();
    const el = n.w2sdElement;
    const r = el?.getBoundingClientRect();
    const c = app.canvas.canvas.getBoundingClientRect();
    const [ox, oy] = app.canvas.ds.offset; const s = app.canvas.ds.scale;
    const th = LiteGraph.NODE_TITLE_HEIGHT;
    const box = [c.left + (n.pos[0] + ox) * s, c.top + (n.pos[1] - th + oy) * s,
                 c.left + (n.pos[0] + n.size[0] + ox) * s, c.top + (n.pos[1] + n.size[1] + oy) * s];
    const dom = document.querySelector(`[data-node-id="${n.id}"]`)?.getBoundingClientRect();
    const node = dom && dom.width ? [dom.left, dom.top, dom.right, dom.bottom] : box;
    const visible = !!r && r.width > 40 && r.height >= 10 && getComputedStyle(el).visibility !== 'hidden'
      && el.checkVisibility?.() !== false;
    const inside = !!r && r.left >= node[0] - 2 && r.right <= node[2] + 2 && r.top >= node[1] - 2 && r.bottom <= node[3] + 2;
    // the line fits the caption (nothing cut off by the ellipsis) at the node's current width
    const clipped = !!el && el.isConnected && el.scrollWidth > el.clientWidth + 1;
    return { id: n.id, type: n.type, text: el?.textContent ?? null, title: el?.title ?? null, shown: n.w2sdShown,
             visible, inside, clipped, width: r ? Math.round(r.width) : null, nodeWidth: n.size[0],
             attached: Boolean(el?.isConnected), vueNode: Boolean(dom && dom.width) };
  });
};

// caption: whether this (frontend, renderer) shows the caption; where it does not (1.27's hidden
// Nodes 2.0 preview mounts no DOM widgets), the steps wait for the Vue node instead.
async function renderer(page, vue, caption) {
  const seen = {};
  // 1) a Reflective KSampler, edited the way the canvas does it (setValue runs onWidgetChanged)
  seen.ksampler = await page.evaluate(async (caption) => {
    w2sdClear();
    app.canvas.ds.scale = 1; app.canvas.ds.offset = [0, 0];
    const node = w2sdMake('W2SDReflectiveKSampler', 120, 110);
    const values = () => Object.fromEntries(node.widgets.filter((w) => w.name !== 'w2sd_cost').map((w) => [w.name, w.value]));
    const mine = () => w2sdCaptions().find((x) => x.id === node.id);
    // the renderer lays the node out on its next frames: wait for the caption (or the Vue node)
    await w2sdUntil(() => { const c = mine(); return caption ? c.visible : c.vueNode; }, 10000);
    const snaps = [];
    let linked = [];
    const snap = (label) => snaps.push({ label, values: values(), linked, ...mine() });
    snap('defaults');
    set('reflect_steps', -1); snap('reflect_steps=-1');
    const text = w2sdMake('CLIPTextEncode', 600, 400);
    text.connect(0, node, node.findInputSlot('weak_positive'));
    linked = ['weak_positive']; snap('weak_positive linked');
    // the longest lines (a window only bounds the counts) at the node's default width
    for (const [name, value] of [['mode', 'reflect+guide'], ['mode', 'guide'], ['mode', 'reflect'],
                                  ['reflect_end_percent', 1.0], ['steps', 25], ['reflect_steps', 12],
                                  ['mode', 'guide'], ['mode', 'reflect+guide'], ['weak_cfg', 1.0],
                                  ['repeats', 2], ['guidance', 0], ['mode', 'guide'], ['reflect_steps', 0]]) {
      set(name, value); snap(`${name}=${value}`);
    }
    set('reflect_steps', 12); set('repeats', 1); set('mode', 'reflect'); set('guidance', 1);
    return { snaps, serialized: node.serialize().widgets_values };
    function set(k, v) { w2sdSet(node, k, v); }
  }, caption);
  await page.screenshot({ path: `${shotDir}/w2sd_${tag}_${vue ? 'vue' : 'classic'}_node.png` });

  // 2) building blocks: T from the scheduler, CFG from the guider, the pair from W2SD Expert Pair;
  //    the Advanced node counts the steps between start_at_step and end_at_step
  seen.custom = await page.evaluate(async () => {
    w2sdClear();
    const guider = w2sdMake('W2SDGuider', 40, 40), select = w2sdMake('KSamplerSelect', 40, 360);
    const sampler = w2sdMake('W2SDSampler', 340, 360), sched = w2sdMake('BasicScheduler', 40, 520);
    const sca = w2sdMake('SamplerCustomAdvanced', 700, 40);
    const link = (a, o, b, i) => a.connect(a.findOutputSlot(o), b, b.findInputSlot(i));
    link(select, 'SAMPLER', sampler, 'sampler'); link(guider, 'GUIDER', sca, 'guider');
    link(sampler, 'SAMPLER', sca, 'sampler'); link(sched, 'SIGMAS', sca, 'sigmas');
    // the plan spelled out: the checks below are about where the numbers come from, not the defaults
    w2sdSet(sampler, 'mode', 'reflect'); w2sdSet(sampler, 'guidance', 1.0);
    w2sdSet(guider, 'cfg', 7.0); w2sdSet(guider, 'weak_cfg', 1.0); w2sdSet(sampler, 'reflect_steps', 12);
    w2sdSet(sampler, 'reflect_end_percent', 1.0); w2sdSet(sched, 'steps', 25);
    const a = [sampler.w2sdRefresh().text, guider.w2sdRefresh().text];
    w2sdSet(sched, 'steps', 10);
    const b = [sampler.w2sdRefresh().text, guider.w2sdRefresh().text];
    w2sdSet(sampler, 'mode', 'guide');  // a CFG-only pair in guide mode: plain CFG, no extra cost
    const g = guider.w2sdRefresh().text;
    w2sdSet(guider, 'weak_cfg', -1);    // nothing differs ...
    const experts = w2sdMake('W2SDExpertPairBuilder', 40, 700), loader = w2sdMake('CheckpointLoaderSimple', 40, 860);
    const e0 = guider.w2sdRefresh().text;
    link(loader, 'MODEL', experts, 'model'); link(experts, 'model', guider, 'model');  // ... until the MoE pair
    const e1 = guider.w2sdRefresh().text;
    app.graph.remove(sampler);  // a plain sampler: the guider runs the default plan (off)
    link(select, 'SAMPLER', sca, 'sampler');
    const c = guider.w2sdRefresh().text;
    const adv = w2sdMake('W2SDReflectiveKSamplerAdvanced', 900, 400);
    const enc = w2sdMake('CLIPTextEncode', 1300, 700);
    enc.connect(0, adv, adv.findInputSlot('weak_positive'));
    const advanced = [];
    w2sdSet(adv, 'mode', 'reflect'); w2sdSet(adv, 'guidance', 1.0);
    for (const [k, v] of [['reflect_steps', -1], ['reflect_end_percent', 1.0], ['end_at_step', 10],
                          ['return_with_leftover_noise', 'enable'], ['start_at_step', 4], ['reflect_steps', 30],
                          ['return_with_leftover_noise', 'disable'], ['start_at_step', 12]]) {
      w2sdSet(adv, k, v);
      advanced.push({ values: Object.fromEntries(adv.widgets.filter((w) => w.name !== 'w2sd_cost').map((w) => [w.name, w.value])),
                      text: adv.w2sdRefresh().text });
    }
    return { a, b, g, e0, e1, c, advanced };
  });

  // 3) a real run with tiny checkpoints: the executed report replaces the estimate
  seen.run = await page.evaluate(async ([tiny, caption, seed]) => {
    w2sdClear();
    app.canvas.ds.scale = 1; app.canvas.ds.offset = [0, 0];
    const strong = w2sdMake('UNETLoader', 80, 110), weak = w2sdMake('UNETLoader', 80, 270);
    const cond = w2sdMake('LotusConditioning', 80, 430), latent = w2sdMake('EmptyLatentImage', 80, 530);
    const ks = w2sdMake('W2SDReflectiveKSampler', 440, 110), save = w2sdMake('SaveLatent', 820, 110);
    w2sdSet(strong, 'unet_name', tiny.unet); w2sdSet(weak, 'unet_name', tiny.unet_weak);
    w2sdSet(latent, 'width', 64); w2sdSet(latent, 'height', 64);
    strong.connect(0, ks, ks.findInputSlot('model')); weak.connect(0, ks, ks.findInputSlot('weak_model'));
    cond.connect(0, ks, ks.findInputSlot('positive')); cond.connect(0, ks, ks.findInputSlot('negative'));
    latent.connect(0, ks, ks.findInputSlot('latent_image')); ks.connect(0, save, save.findInputSlot('samples'));
    w2sdSet(ks, 'steps', 4); w2sdSet(ks, 'cfg', 1.0); w2sdSet(ks, 'reflect_end_percent', 1.0);
    w2sdSet(ks, 'reflect_steps', -1); w2sdSet(ks, 'control_after_generate', 'fixed');
    w2sdSet(ks, 'mode', 'reflect'); w2sdSet(ks, 'guidance', 1.0);
    // a seed of its own per renderer: ComfyUI answers an unchanged prompt from its cache, and then
    // sends `executed` for the output node only, so the sampler would get no report
    w2sdSet(ks, 'seed', seed);
    const before = ks.w2sdRefresh().text;
    // the server's messages for this run, for the report's diagnosis
    const events = [];
    const api = window.comfyAPI?.api?.api ?? app.api;
    for (const type of ['executed', 'execution_cached', 'execution_error', 'execution_success', 'execution_start']) {
      api?.addEventListener?.(type, ({ detail }) => events.push([type, JSON.stringify(detail).slice(0, 300)]));
    }
    await app.queuePrompt(0, 1);
    await w2sdUntil(() => ks.w2sdShown?.report, 60000);
    const mine = () => w2sdCaptions().find((x) => x.id === ks.id);
    await w2sdUntil(() => (caption ? mine().visible : mine().vueNode), 5000);
    const { text, ...c } = mine();
    return { before, after: { ...c, ...ks.w2sdShown, dom: text }, id: ks.id, events };
  }, [tiny, caption, vue ? 2 : 1]);
  await page.screenshot({ path: `${shotDir}/w2sd_${tag}_${vue ? 'vue' : 'classic'}_run.png` });
  seen.run.edited = await page.evaluate((id) => {
    const ks = app.graph.getNodeById(id);
    w2sdSet(ks, 'steps', 5);
    return { ...ks.w2sdShown, dom: ks.w2sdElement?.textContent };
  }, seen.run.id);

  // 4) the help page: select the node, click the selection toolbox's info button; the page must
  //    fit the panel (no table or block wider than the panel's text column)
  seen.help = await helpPage(page, 'W2SDReflectiveKSampler', 'What it does');
  await page.screenshot({ path: `${shotDir}/w2sd_${tag}_${vue ? 'vue' : 'classic'}_help.png` });
  await page.keyboard.press('Escape').catch(() => {});
  seen.helpAdvanced = await helpPage(page, 'W2SDReflectiveKSamplerAdvanced', 'start_at_step');
  await page.screenshot({ path: `${shotDir}/w2sd_${tag}_${vue ? 'vue' : 'classic'}_help_advanced.png` });
  await page.keyboard.press('Escape').catch(() => {});

  // 5) the node search: what a newcomer types
  seen.search = {};
  for (const query of ['W2SD', 'weak to strong', 'z-sampling', 'autoguidance']) seen.search[query] = await searchNodes(page, query);
  await page.evaluate(() => w2sdClear());
  await page.keyboard.press('Escape').catch(() => {});
  return seen;
}

async function helpPage(page, type, marker) {
  await page.evaluate((type) => {
    w2sdClear();
    app.canvas.ds.scale = 1; app.canvas.ds.offset = [0, 0];
    const n = w2sdMake(type, 300, 150);
    app.canvas.deselectAll?.();
    app.canvas.selectNode(n); app.canvas.setDirty(true, true);
  }, type);
  const button = page.locator('[data-testid="info-button"]').first();
  try { await button.waitFor({ state: 'attached', timeout: 10000 }); } catch (e) { return { clicked: false, error: 'no info button' }; }
  // 1.27's toolbox may keep the button hidden until hovered: a DOM click is what the user's click does
  try { await button.click({ timeout: 1500 }); } catch {
    try { await button.dispatchEvent('click'); } catch (e) { return { clicked: false, error: String(e.message).slice(0, 200) }; }
  }
  try {
    await page.waitForFunction((marker) => [...document.querySelectorAll('h1,h2,h3,p,li,code,td')]
      .some((e) => e.textContent.includes(marker) && e.getBoundingClientRect().width > 0), marker, { timeout: 10000 });
  } catch { return { clicked: true, shown: false }; }
  return { clicked: true, shown: true, ...await page.evaluate((marker) => {
    // the rendered page: the element holding the page's title, and its scrolling panel
    const title = [...document.querySelectorAll('h1')].find((e) => /W2SD/.test(e.textContent) && e.getBoundingClientRect().width > 0);
    let body = title?.parentElement;
    while (body && body.parentElement && !body.querySelector('table,ul') ) body = body.parentElement;
    if (!body) return { panel: null };
    const box = body.getBoundingClientRect();
    const wide = [...body.querySelectorAll('table,pre,ul,ol,p,img')].map((e) => [e.tagName, e.getBoundingClientRect(), e.scrollWidth, e.clientWidth])
      .filter(([, r, sw, cw]) => r.width > 0 && (r.right > box.right + 1 || r.left < box.left - 1 || (sw > cw + 1 && cw > 0)))
      .map(([tag, r, sw, cw], i) => `${tag} ${Math.round(r.left)}..${Math.round(r.right)} (scroll ${sw}/${cw})`);
    // what sticks out, for the message
    const culprits = [...body.querySelectorAll('code,a,strong,em,span')].filter((e) => e.getBoundingClientRect().right > box.right + 1)
      .map((e) => `${e.tagName} ${e.textContent.slice(0, 40)}`).slice(0, 8);
    wide.push(...culprits);
    return { panel: [Math.round(box.left), Math.round(box.right)], tables: body.querySelectorAll('table').length, wide,
             overflow: body.scrollWidth > body.clientWidth + 1 };
  }, marker) };
}

// The frontend's node search box (a double click on the empty canvas), the results in its order.
async function searchNodes(page, query) {
  await page.evaluate(() => { w2sdClear(); app.canvas.ds.scale = 1; app.canvas.ds.offset = [0, 0]; app.canvas.setDirty(true, true); });
  const at = await page.evaluate(() => { const r = app.canvas.canvas.getBoundingClientRect(); return [r.left + r.width * 0.45, r.top + r.height * 0.55]; });
  const input = page.locator('.comfy-vue-node-search-container input, .node-search-box input, [role="dialog"] input').first();
  let open = false;
  for (let attempt = 0; attempt < 3 && !open; attempt++) {  // a panel closing may swallow the first double click
    await page.mouse.dblclick(at[0], at[1]);
    try { await input.waitFor({ state: 'visible', timeout: 3000 }); open = true; } catch { await page.keyboard.press('Escape'); }
  }
  if (!open) {  // 1.35's Nodes 2.0 may not take the double click here: the frontend's own command
    await page.evaluate(() => app.extensionManager?.command?.execute?.('Workspace.SearchBox.Toggle'));
    try { await input.waitFor({ state: 'visible', timeout: 3000 }); open = true; } catch { /* reported below */ }
  }
  if (!open) return { error: 'no search box' };
  await input.fill(query);
  let names = [];
  try {
    await page.waitForFunction((q) => document.querySelectorAll('[role="option"]').length > 0, query, { timeout: 5000 });
    await page.waitForTimeout(400);  // the list follows the input on the next frames
    names = await page.evaluate(() => [...document.querySelectorAll('[role="option"]')]
      .filter((e) => e.getBoundingClientRect().height > 0).map((e) => e.innerText.replace(/\s+/g, ' ').trim()));
  } catch { names = []; }
  await page.screenshot({ path: `${shotDir}/w2sd_${tag}_search_${query.replace(/\W+/g, '_')}.png` });
  await page.keyboard.press('Escape');
  await page.waitForTimeout(200);
  return { names };
}

// every example workflow loads, with nothing missing, laid out without overlaps as this renderer draws it
async function loadWorkflows(page, workflows, vue) {
  const seen = {};
  for (const [name, data] of Object.entries(workflows)) {
    seen[name] = await page.evaluate(async ([data, vue]) => {
      await app.loadGraphData(data, true, true, null, { showMissingNodesDialog: false, showMissingModelsDialog: false });
      app.canvas.ds.scale = 1; app.canvas.ds.offset = [60, 80]; app.canvas.setDirty(true, true);
      const missing = data.nodes.filter((n) => !(n.type in LiteGraph.registered_node_types)).map((n) => n.type);
      // Nodes 2.0 lays the nodes out in the DOM on its next frames
      if (vue) await w2sdUntil(() => app.graph.nodes.every((n) => document.querySelector(`[data-node-id="${n.id}"]`)?.getBoundingClientRect().height > 0), 10000);
      for (let i = 0; i < 6; i++) await new Promise((r) => requestAnimationFrame(r));
      const saved = app.graph.serialize();
      return { missing, captions: w2sdCaptions(),
               nodes: saved.nodes.map((n) => [n.id, n.type, n.widgets_values?.length ? n.widgets_values : null]),
               boxes: w2sdBoxes(), groups: (app.graph.groups ?? app.graph._groups ?? []).map((g) => [g.title, [...g._bounding ?? g.bounding]]),
               titleHeight: LiteGraph.NODE_TITLE_HEIGHT };
    }, [data, vue]);
  }
  return seen;
}

// Template-browser thumbnails (W2SD_THUMBNAILS=<dir>; run_browser makes the JPEGs): the classic
// canvas alone at zoom 0.7 around the W2SD nodes, every panel, toolbar, minimap and toast hidden,
// rendered at twice the pixels for a clean downscale.
async function thumbnails(browser, workflows) {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 860 }, deviceScaleFactor: 2 })).newPage();
  await open(page);
  await page.evaluate(() => app.extensionManager.setting.set('Comfy.VueNodes.Enabled', false));
  for (const [name, data] of Object.entries(workflows)) {
    const clip = await page.evaluate(async (data) => {
      await app.loadGraphData(data, true, true, null, { showMissingNodesDialog: false, showMissingModelsDialog: false });
      const scale = 0.7, W = 732, H = 492, pad = 20;
      const th = LiteGraph.NODE_TITLE_HEIGHT;
      const bbox = (nodes) => nodes.reduce((b, n) => [Math.min(b[0], n.pos[0]), Math.min(b[1], n.pos[1] - th),
        Math.max(b[2], n.pos[0] + n.size[0]), Math.max(b[3], n.pos[1] + n.size[1])], [Infinity, Infinity, -Infinity, -Infinity]);
      const all = bbox(app.graph.nodes);
      // the W2SD sampling node(s) in full, else the pack's other nodes
      const ours = app.graph.nodes.filter((n) => n.w2sdRefresh);
      const focus = bbox(ours.length ? ours : app.graph.nodes.filter((n) => String(n.type).startsWith('W2SD')));
      const w = W / scale, h = H / scale;
      const place = (lo, hi, f0, f1, size) => Math.max(lo - pad, Math.min((f0 + f1) / 2 - size / 2, hi + pad - size));
      const left = all[2] - all[0] + 2 * pad <= w ? (all[0] + all[2]) / 2 - w / 2 : place(all[0], all[2], focus[0], focus[2], w);
      const top = all[3] - all[1] + 2 * pad <= h ? (all[1] + all[3]) / 2 - h / 2 : place(all[1], all[3], focus[1], focus[3], h);
      const c = app.canvas.canvas.getBoundingClientRect();
      const x = Math.round(c.left + 16), y = Math.round(c.top + 16);
      app.canvas.ds.scale = scale;
      app.canvas.ds.offset = [(x - c.left) / scale - left, (y - c.top) / scale - top];
      app.canvas.show_info = false;
      app.canvas.deselectAll?.();
      app.canvas.setDirty(true, true);
      for (let i = 0; i < 6; i++) await new Promise((r) => requestAnimationFrame(r));
      // hide everything but the canvas and the nodes' DOM widgets
      const keep = [app.canvas.canvas, ...document.querySelectorAll('.dom-widget')];
      const lineage = new Set();
      for (const k of keep) for (let e = k; e; e = e.parentElement) lineage.add(e);
      window.w2sdHidden = [...document.body.querySelectorAll('*')]
        .filter((el) => !lineage.has(el) && !keep.some((k) => k.contains(el)) && el.style.visibility !== 'hidden');
      for (const el of window.w2sdHidden) el.style.visibility = 'hidden';
      for (let i = 0; i < 3; i++) await new Promise((r) => requestAnimationFrame(r));
      return { x, y, width: W, height: H };
    }, data);
    await page.screenshot({ path: `${process.env.W2SD_THUMBNAILS}/${name}.png`, clip });
    await page.evaluate(() => { for (const el of window.w2sdHidden) el.style.visibility = ''; });
  }
}

(async () => {
  const browser = await chromium.launch({
    executablePath: chromiumPath, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
  try {
    const page = await (await browser.newContext({ viewport: { width: 1280, height: 860 } })).newPage();
    page.on('request', (r) => out.requests.push(r.url()));
    page.on('response', (r) => { if (r.status() >= 400) out.requests.push(`${r.status()} ${r.url()}`); });
    page.on('pageerror', (e) => out.errors.push(String(e.stack || e.message)));
    // A deprecation warning comes from the frontend's own shim whoever triggered it: keep the JS
    // stack, so the test can tell the extension's (web/w2sd*.js in it) from the frontend's own.
    await page.addInitScript(() => {
      const warn = console.warn.bind(console);
      console.warn = (...args) => {
        if (args.some((a) => /deprecat/i.test(String(a)))) args.push(`[stack: ${(new Error().stack || '').split('\n').slice(2, 12).join(' | ')}]`);
        warn(...args);
      };
    });
    page.on('console', (m) => {
      if (m.type() === 'error') out.errors.push(`${m.text()} @ ${m.location()?.url ?? ''}`);
      if (m.type() === 'warning' && collecting) out.warnings.push(`${m.text()} @ ${m.location()?.url ?? ''}`);
    });
    await open(page);
    await page.evaluate(HELPERS);
    mark('open');
    out.version = await page.evaluate(() => window.__COMFYUI_FRONTEND_VERSION__ ?? null);
    out.extensions = await page.evaluate(() => app.extensions.map((e) => e.name));
    out.hasVue = await page.evaluate(() => Boolean(app.ui.settings.settingsLookup?.['Comfy.VueNodes.Enabled']));
    out.mark = 0;
    collecting = true;
    out.renderers.classic = await renderer(page, false, true);
    mark('classic');

    const workflows = JSON.parse(fs.readFileSync(workflowsJson, 'utf8'));
    await page.setViewportSize({ width: 2600, height: 1700 });
    out.workflows = await loadWorkflows(page, workflows, false);
    await page.setViewportSize({ width: 1280, height: 860 });
    // the template browser's list for this pack: in number order
    out.templates = await page.evaluate(async () => {
      const api = window.comfyAPI?.api?.api ?? app.api;
      return api.getWorkflowTemplates();
    });
    mark('workflows');
    if (out.hasVue) {
      // a reload applies the renderer setting on every frontend (switching live left the caption
      // empty in 1.35.9); the settings file turns workflow persistence off, so the reload opens no
      // earlier workflow over the test's graph
      await page.evaluate(() => app.extensionManager.setting.set('Comfy.VueNodes.Enabled', true));
      collecting = false; await open(page); await page.evaluate(HELPERS); collecting = true;
      out.renderers.vue = await renderer(page, true, vueCaption === 'yes');
      await page.setViewportSize({ width: 2600, height: 1700 });
      out.workflowsVue = await loadWorkflows(page, JSON.parse(fs.readFileSync(workflowsJson, 'utf8')), true);
      await page.setViewportSize({ width: 1280, height: 860 });
      await page.evaluate(() => app.extensionManager.setting.set('Comfy.VueNodes.Enabled', false));
      mark('vue');
    }
    if (process.env.W2SD_THUMBNAILS) await thumbnails(browser, JSON.parse(fs.readFileSync(workflowsJson, 'utf8')));
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e && e.stack || e); process.exit(1); });
