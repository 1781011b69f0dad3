/* osnmf interactive atlas view (report.html). Reads the JSON in #osnmf-atlas-data (written by
   osnmf/report/atlas_view.py) and draws sections on canvases; fetches nothing. Text from the data
   only ever goes into textContent, never into markup. */
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const root = $("osnmf-atlas");
  const source = $("osnmf-atlas-data");
  if (!root || !source) return;
  const D = JSON.parse(source.textContent);
  const [NA, ND, NM] = D.shape;
  const ZOOM = Math.max(2, Math.floor(420 / Math.max(NA, ND, NM)));
  const GENE_ZOOM = Math.max(1, Math.round(ZOOM * 0.7));
  const MARGIN = 14;  // px around a section, for the orientation letters
  const R = D.regions;
  const K = D.patterns.names.length;
  const HIDDEN_ANCESTORS = new Set(["root", "grey"]);
  // x, y: pixel column and row; s: the section. Edge letters: left, right, top, bottom.
  const PLANES = {
    coronal: {n: NA, w: NM, h: ND, axis: 0, edges: ["L", "R", "D", "V"],
              voxel: (x, y, s) => (s * ND + y) * NM + x},
    sagittal: {n: NM, w: NA, h: ND, axis: 2, edges: ["A", "P", "D", "V"],
               voxel: (x, y, s) => (x * ND + y) * NM + s},
    horizontal: {n: ND, w: NM, h: NA, axis: 1, edges: ["L", "R", "A", "P"],
                 voxel: (x, y, s) => (y * ND + s) * NM + x},
  };
  // opens where the first pattern is most present: its peak section in each plane (D.patterns.peak)
  const PEAK = (D.patterns.peak && D.patterns.peak[0]) || [NA >> 1, ND >> 1, Math.round(NM * 0.3)];
  const S = {pattern: 0, plane: "coronal", outline: "coarse", gene: -1, region: -1,
             slice: {coronal: PEAK[0], sagittal: PEAK[2], horizontal: PEAK[1]}};
  let A = null; // decoded arrays, see load()

  // ---- decoding --------------------------------------------------------------------------------
  function bytes(b64) {
    const text = atob(b64);
    const out = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
    return out;
  }
  async function inflate(b64) {
    const stream = new Blob([bytes(b64)]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }
  function uint16(u8) {
    const view = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
    const out = new Uint16Array(u8.byteLength / 2);
    for (let i = 0; i < out.length; i++) out[i] = view.getUint16(2 * i, true);
    return out;
  }
  async function load() {
    const [bits, ann, pat, coef, meas] = await Promise.all([
      inflate(D.support), inflate(D.annotation), inflate(D.patterns.data), inflate(D.genes.coef),
      D.genes.measured_data ? inflate(D.genes.measured_data) : Promise.resolve(new Uint8Array(0))]);
    const support = new Int32Array(NA * ND * NM).fill(-1);
    let m = 0;
    for (let i = 0; i < support.length; i++) if (bits[i >> 3] & (128 >> (i & 7))) support[i] = m++;
    const measuredAt = new Map(D.genes.measured.map((row, j) => [row, j]));
    return {support, m, ann: uint16(ann), pat, coef: uint16(coef), meas, measuredAt, lut: bytes(D.lut)};
  }

  // ---- values ----------------------------------------------------------------------------------
  const patternValue = (k) => (si) => A.pat[k * A.m + si] / 255;
  function coefficients(row) {
    const out = [];
    for (let k = 0; k < K; k++) out.push(A.coef[row * K + k] / 65535 * D.genes.coef_max[k]);
    return out;
  }
  function reconstructed(row) {  // in units of the gene's display scale
    const weights = coefficients(row).map((c, k) => c * D.patterns.max[k] / 255 / D.genes.scale[row]);
    return (si) => {
      let v = 0;
      for (let k = 0; k < K; k++) v += weights[k] * A.pat[k * A.m + si];
      return v;
    };
  }
  function measured(row) {
    const j = A.measuredAt.get(row);
    if (j === undefined) return null;
    return (si) => A.meas[j * A.m + si] / D.genes.levels;
  }

  // ---- regions ---------------------------------------------------------------------------------
  const label = (flat) => A.ann[flat] - 1;  // region index, -1 outside the brain
  function ancestors(r) {
    const out = [];
    for (let p = R.parent[r]; p >= 0; p = R.parent[p]) if (!HIDDEN_ANCESTORS.has(R.acronym[p])) out.push(p);
    return out;
  }
  function regionText(r) {
    const up = ancestors(r).slice(0, 3).map((p) => R.acronym[p]).join(" › ");
    return `${R.acronym[r]} — ${R.name[r]}` + (up ? ` (in ${up})` : "");
  }
  function members(r) {  // regions inside r (r and its descendants), as flags
    const inside = new Uint8Array(R.acronym.length);
    for (let i = 0; i < inside.length; i++) {
      for (let p = i; p >= 0; p = R.parent[p]) if (p === r) { inside[i] = 1; break; }
    }
    return inside;
  }

  // ---- drawing ---------------------------------------------------------------------------------
  // outsideZero: brain voxels outside the support are drawn at value 0 (a pattern is 0 there by
  // definition), not as grey holes; measured images keep them grey (nothing was measured there)
  function drawSection(canvas, zoom, value, outsideZero = false) {
    const p = PLANES[S.plane], s = S.slice[S.plane];
    canvas.width = p.w * zoom + 2 * MARGIN;
    canvas.height = p.h * zoom + 2 * MARGIN;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.translate(MARGIN, MARGIN);
    const image = new ImageData(p.w, p.h);
    for (let y = 0; y < p.h; y++) {
      for (let x = 0; x < p.w; x++) {
        const flat = p.voxel(x, y, s), at = 4 * (y * p.w + x);
        let rgb = [255, 255, 255];
        if (A.ann[flat] > 0) {
          const si = A.support[flat];
          if (!value || (si < 0 && !outsideZero)) rgb = [221, 221, 221];
          else if (si < 0) rgb = [A.lut[0], A.lut[1], A.lut[2]];
          else {
            const c = Math.max(0, Math.min(255, Math.round(value(si) * 255)));
            rgb = [A.lut[3 * c], A.lut[3 * c + 1], A.lut[3 * c + 2]];
          }
        }
        image.data.set([rgb[0], rgb[1], rgb[2], 255], at);
      }
    }
    const small = document.createElement("canvas");
    small.width = p.w;
    small.height = p.h;
    small.getContext("2d").putImageData(image, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(small, 0, 0, p.w * zoom, p.h * zoom);
    if (S.outline !== "off") {
      const group = (flat) => {
        const r = label(flat);
        return r < 0 ? -1 : (S.outline === "fine" ? r : R[S.outline][r]);
      };
      strokeEdges(ctx, p, s, zoom, group, (a, b) => a >= 0 && b >= 0, "rgba(255,255,255,0.75)", 1);
      strokeEdges(ctx, p, s, zoom, group, (a, b) => a < 0 || b < 0, "#555", 1);
    }
    if (S.region >= 0) {
      const inside = S.regionMembers;
      strokeEdges(ctx, p, s, zoom, (flat) => (label(flat) >= 0 && inside[label(flat)] ? 1 : 0), () => true,
                  "#e8112d", 2);
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    edgeLetters(ctx, p);
  }

  // Lines along the voxel edges where key() changes between neighbours and keep(a, b) holds.
  function strokeEdges(ctx, p, s, zoom, key, keep, color, width) {
    ctx.beginPath();
    for (let y = 0; y < p.h; y++) {
      for (let x = 0; x < p.w; x++) {
        const a = key(p.voxel(x, y, s));
        if (x + 1 < p.w) {
          const b = key(p.voxel(x + 1, y, s));
          if (a !== b && keep(a, b)) { ctx.moveTo((x + 1) * zoom, y * zoom); ctx.lineTo((x + 1) * zoom, (y + 1) * zoom); }
        }
        if (y + 1 < p.h) {
          const b = key(p.voxel(x, y + 1, s));
          if (a !== b && keep(a, b)) { ctx.moveTo(x * zoom, (y + 1) * zoom); ctx.lineTo((x + 1) * zoom, (y + 1) * zoom); }
        }
      }
    }
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.stroke();
  }

  function edgeLetters(ctx, p) {
    const w = ctx.canvas.width, h = ctx.canvas.height;
    ctx.fillStyle = "#333";
    ctx.font = "bold 12px sans-serif";
    ctx.textBaseline = "middle";
    ctx.textAlign = "left";
    ctx.fillText(p.edges[0], 2, h / 2);
    ctx.textAlign = "right";
    ctx.fillText(p.edges[1], w - 2, h / 2);
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    ctx.fillText(p.edges[2], w / 2, 1);
    ctx.textBaseline = "bottom";
    ctx.fillText(p.edges[3], w / 2, h - 1);
  }

  function drawColorbars() {
    for (const bar of root.querySelectorAll("canvas.av-lut")) {
      const ctx = bar.getContext("2d");
      for (let y = 0; y < bar.height; y++) {
        const c = Math.round(255 * (1 - y / (bar.height - 1)));
        ctx.fillStyle = `rgb(${A.lut[3 * c]},${A.lut[3 * c + 1]},${A.lut[3 * c + 2]})`;
        ctx.fillRect(0, y, bar.width, 1);
      }
    }
  }

  function fmt(v) { return Math.abs(v) >= 100 || v === 0 ? v.toFixed(0) : v.toPrecision(3); }

  function redraw() {
    const p = PLANES[S.plane], s = S.slice[S.plane];
    drawSection($("av-main"), ZOOM, patternValue(S.pattern), true);
    $("av-main-caption").textContent = `${D.patterns.names[S.pattern]}, ${S.plane} section`;
    $("av-bar-max").textContent = fmt(D.patterns.max[S.pattern]);
    $("av-slice-label").textContent =
      `${S.plane} section ${s + 1} of ${p.n} · ${D.position_labels[p.axis][s]}`;
    if (S.gene >= 0) drawGene();
  }

  // ---- hover -----------------------------------------------------------------------------------
  function hover(canvas, zoom, name, value, unit) {
    canvas.addEventListener("mousemove", (event) => {
      if (!A) return;
      const p = PLANES[S.plane];
      const x = Math.floor((event.offsetX - MARGIN) / zoom), y = Math.floor((event.offsetY - MARGIN) / zoom);
      if (x < 0 || y < 0 || x >= p.w || y >= p.h) return;
      const flat = p.voxel(x, y, S.slice[S.plane]), r = label(flat);
      if (r < 0) { $("av-hover").textContent = "outside the brain"; return; }
      const si = A.support[flat], f = value();
      const shown = si >= 0 && f ? ` · ${name()} ${fmt(f(si) * unit())}` : " · outside the analysed voxels";
      $("av-hover").textContent = regionText(r) + shown;
    });
    canvas.addEventListener("mouseleave", () => { $("av-hover").textContent = ""; });
  }

  // ---- patterns --------------------------------------------------------------------------------
  function showPattern(k) {
    S.pattern = k;
    $("av-pattern").value = String(k);
    const info = $("av-pattern-info");
    info.textContent = "";
    const links = D.links.filter((l) => l[0] === k).slice(0, 3);
    info.append(`${D.patterns.names[k]}: best region links `,
                links.map((l) => `${l[1]} (r ${l[2]})`).join(", ") || "none", "; marker genes ");
    for (const [symbol, row, importance] of D.markers[k]) info.append(geneButton(symbol, row, importance), " ");
    redraw();
  }

  function geneButton(symbol, row, importance) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "av-link";
    const rows = rowsOf.get(symbol.toLowerCase()) || [];  // a gene measured more than once: which experiment
    const which = rows.length > 1 ? ` #${rows.indexOf(row) + 1}` : "";
    b.title = `experiment ${D.genes.experiment[row]}`;
    b.textContent = importance === undefined ? symbol + which : `${symbol}${which} (${importance})`;
    b.addEventListener("click", () => { $("av-gene").value = symbol; showGene(row); });
    return b;
  }

  // ---- genes -----------------------------------------------------------------------------------
  const rowsOf = new Map();
  D.genes.symbol.forEach((g, row) => {
    const key = g.toLowerCase();
    if (!rowsOf.has(key)) rowsOf.set(key, []);
    rowsOf.get(key).push(row);
  });

  function findGene(text) {
    const key = text.trim().toLowerCase();
    if (!key) return {rows: []};
    if (rowsOf.has(key)) return {rows: rowsOf.get(key)};
    const starts = [...rowsOf.keys()].filter((g) => g.startsWith(key));
    if (starts.length === 1) return {rows: rowsOf.get(starts[0])};
    return {rows: [], candidates: starts.map((g) => D.genes.symbol[rowsOf.get(g)[0]])};
  }

  function onGeneInput() {
    const found = findGene($("av-gene").value);
    if (found.rows.length) { showGene(found.rows[0]); return; }
    S.gene = -1;
    $("av-gene-panel").hidden = true;
    $("av-gene-experiment").hidden = true;
    $("av-networks").textContent = "";
    const text = $("av-gene").value.trim();
    const c = found.candidates || [];
    $("av-gene-info").textContent = !text ? "" : c.length
      ? `${c.length} genes start with “${text}”: ${c.slice(0, 12).join(", ")}${c.length > 12 ? ", …" : ""}`
      : `No gene “${text}” in this run.`;
  }

  function showGene(row) {
    S.gene = row;
    const symbol = D.genes.symbol[row], rows = rowsOf.get(symbol.toLowerCase());
    const pick = $("av-gene-experiment");
    pick.hidden = rows.length < 2;
    pick.textContent = "";
    for (const r of rows) pick.add(new Option(`experiment ${D.genes.experiment[r]}`, String(r), false, r === row));
    const coefs = coefficients(row);
    const strongest = coefs.indexOf(Math.max(...coefs));
    const embedded = A.measuredAt.has(row);
    $("av-gene-info").textContent =
      `${symbol} · experiment ${D.genes.experiment[row]} · reconstruction r = ${D.genes.recon_r[row]} · ` +
      `strongest pattern ${D.patterns.names[strongest]}` +
      (embedded ? "" : " · measured image not embedded in this page (see results.h5ad)");
    drawCoefficients(coefs);
    $("av-gene-max").textContent = fmt(D.genes.scale[row]);
    $("av-gene-panel").hidden = false;
    drawGene();
    drawNetworks(symbol);
  }

  function drawCoefficients(coefs) {
    const box = $("av-coefs"), top = Math.max(...coefs) || 1;
    box.textContent = "";
    const title = document.createElement("div");
    title.className = "av-caption";
    title.textContent = "coefficients";
    box.append(title);
    coefs.forEach((c, k) => {
      const line = document.createElement("div");
      line.className = "av-coef" + (k === S.pattern ? " av-on" : "");
      line.title = "show this pattern";
      const name = document.createElement("span"), bar = document.createElement("span"),
            value = document.createElement("span");
      name.textContent = D.patterns.names[k];
      name.title = D.patterns.names[k];
      bar.className = "av-bar";
      bar.style.width = `${Math.round(120 * c / top)}px`;
      value.textContent = fmt(c);
      line.append(name, bar, value);
      line.addEventListener("click", () => { showPattern(k); drawCoefficients(coefs); });
      box.append(line);
    });
  }

  function drawGene() {
    const row = S.gene, canvas = $("av-measured"), seen = measured(row);
    drawSection(canvas, GENE_ZOOM, seen);
    if (!seen) {
      const ctx = canvas.getContext("2d");
      ctx.fillStyle = "#333";
      ctx.font = "12px sans-serif";
      ctx.textAlign = "center";
      ctx.fillText("not embedded", canvas.width / 2, canvas.height / 2);
    }
    drawSection($("av-recon"), GENE_ZOOM, reconstructed(row));
  }

  function drawNetworks(symbol) {
    const box = $("av-networks");
    box.textContent = "";
    const found = D.networks.filter((n) => n.nodes.some((nd) => nd[0] === symbol));
    if (!found.length) {
      box.textContent = `${symbol} is in no pattern's coexpression network (each holds the top-importance genes ` +
        "of its pattern).";
      return;
    }
    for (const net of found) box.append(networkFigure(net, symbol));
  }

  function networkFigure(net, symbol) {
    const figure = document.createElement("div");
    figure.className = "av-figure av-network";
    const canvas = document.createElement("canvas");
    canvas.width = 400;
    canvas.height = 300;
    const me = net.nodes.findIndex((nd) => nd[0] === symbol);
    drawNetwork(canvas, net, me);
    const around = net.edges.filter((e) => e[0] === me || e[1] === me)
      .map((e) => `${net.nodes[e[0] === me ? e[1] : e[0]][0]} (r ${e[2]})`);
    const caption = document.createElement("div");
    caption.className = "av-caption";
    caption.textContent = `${D.patterns.names[net.pattern]} network: ${net.nodes.length} genes, ` +
      `${net.edges.length} edges (r ≥ ${net.threshold === null ? "?" : net.threshold.toFixed(4)}). ${symbol}${net.nodes[me][2] ? " is a hub;" : ""} ` +
      (around.length ? `linked to ${around.join(", ")}.` : "has no edge.");
    figure.append(canvas, legend(), caption);
    return figure;
  }

  function legend() {  // what the colours and widths of the network drawing mean
    const box = document.createElement("div");
    box.className = "av-legend";
    for (const [color, text] of [["#d62728", "the chosen gene (and its edges)"], ["#ff7f0e", "hub gene"],
                                 ["#1f77b4", "other gene"], ["#999", "edge: r of the two genes' reconstructed " +
                                 "images in the network's top 5% (wider: higher r)"]]) {
      const item = document.createElement("span"), dot = document.createElement("span");
      dot.className = "av-swatch";
      dot.style.background = color;
      item.append(dot, text);
      box.append(item);
    }
    return box;
  }

  function drawNetwork(canvas, net, me) {
    const ctx = canvas.getContext("2d"), n = net.nodes.length;
    const cx = canvas.width / 2, cy = canvas.height / 2, radius = Math.min(cx, cy) - 40;
    const at = net.nodes.map((_, i) => [cx + radius * Math.cos(2 * Math.PI * i / n - Math.PI / 2),
                                        cy + radius * Math.sin(2 * Math.PI * i / n - Math.PI / 2)]);
    const floor = net.threshold === null ? 0 : net.threshold;
    for (const [i, j, r] of net.edges) {
      ctx.strokeStyle = i === me || j === me ? "#d62728" : "#999";
      ctx.lineWidth = 1 + 4 * Math.max(0, (r - floor) / Math.max(1e-9, 1 - floor));
      ctx.beginPath();
      ctx.moveTo(...at[i]);
      ctx.lineTo(...at[j]);
      ctx.stroke();
    }
    ctx.font = "11px sans-serif";
    net.nodes.forEach(([gene, , hub], i) => {
      const [x, y] = at[i];
      ctx.beginPath();
      ctx.arc(x, y, i === me ? 7 : 5, 0, 2 * Math.PI);
      ctx.fillStyle = i === me ? "#d62728" : hub ? "#ff7f0e" : "#1f77b4";
      ctx.fill();
      ctx.fillStyle = "#222";
      ctx.textAlign = x < cx - 1 ? "right" : x > cx + 1 ? "left" : "center";
      ctx.textBaseline = y < cy ? "bottom" : "top";
      ctx.fillText(gene, x + (x < cx - 1 ? -9 : x > cx + 1 ? 9 : 0), y + (y < cy ? -6 : 6));
    });
  }

  // ---- regions ---------------------------------------------------------------------------------
  function findRegion(text) {
    const key = text.trim().toLowerCase();
    if (!key) return {region: -1, candidates: []};
    let r = R.acronym.findIndex((a) => a.toLowerCase() === key);
    if (r < 0) r = R.name.findIndex((a) => a.toLowerCase() === key);
    if (r >= 0) return {region: r, candidates: []};
    const hits = [];
    R.acronym.forEach((a, i) => {
      if (a.toLowerCase().startsWith(key) || R.name[i].toLowerCase().includes(key)) hits.push(i);
    });
    return {region: hits.length === 1 ? hits[0] : -1, candidates: hits};
  }

  function onRegionInput() {
    const text = $("av-region").value.trim(), found = findRegion(text);
    if (found.region >= 0) { showRegion(found.region); return; }
    const panel = $("av-region-panel"), info = $("av-region-info");
    panel.textContent = "";
    info.textContent = !text ? "" : found.candidates.length
      ? `${found.candidates.length} regions match “${text}”: ` : `No region “${text}” in the annotation.`;
    for (const r of found.candidates.slice(0, 12)) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "av-link";
      b.textContent = `${R.acronym[r]} (${R.name[r]})`;
      b.addEventListener("click", () => { $("av-region").value = R.acronym[r]; showRegion(r); });
      info.append(b, " ");
    }
    if (found.candidates.length > 12) info.append("…");
  }

  function showRegion(r) {
    S.region = r;
    S.regionMembers = members(r);
    $("av-region-info").textContent =
      `${regionText(r)} · ${R.level[r]} level · ${R.voxels[r]} voxels (${fmtVolume(R.voxels[r])})`;
    const order = [...Array(K).keys()].filter((k) => D.correlations[r][k] !== null)
      .sort((a, b) => D.correlations[r][b] - D.correlations[r][a]);
    const panel = $("av-region-panel");
    panel.textContent = "";
    panel.append(bestPatternsTable(r, order.slice(0, 5)), regionLinks(r));
    centreOn(r);
    if (order.length) showPattern(order[0]); else redraw();
  }

  function fmtVolume(voxels) {
    return `${(voxels * D.spacing_mm[0] * D.spacing_mm[1] * D.spacing_mm[2]).toFixed(2)} mm³`;
  }

  function bestPatternsTable(r, order) {
    const table = document.createElement("table");
    table.className = "av-table";
    const head = table.insertRow();
    for (const h of ["pattern", "r with the region", "marker genes"]) {
      const th = document.createElement("th");
      th.textContent = h;
      head.append(th);
    }
    for (const k of order) {
      const row = table.insertRow();
      const name = document.createElement("button");
      name.type = "button";
      name.className = "av-link";
      name.textContent = D.patterns.names[k];
      name.addEventListener("click", () => showPattern(k));
      row.insertCell().append(name);
      row.insertCell().textContent = String(D.correlations[r][k]);
      const genes = row.insertCell();
      for (const [symbol, gr] of D.markers[k].slice(0, 5)) genes.append(geneButton(symbol, gr), " ");
    }
    const caption = table.createCaption();
    caption.textContent = order.length ? `Patterns that correlate best with ${R.acronym[r]}`
      : `No pattern correlates with ${R.acronym[r]} (no defined r)`;
    return table;
  }

  function regionLinks(r) {
    const div = document.createElement("div");
    div.className = "av-info";
    const links = D.links.filter((l) => l[3].includes(r)).slice(0, 5);
    div.textContent = links.length
      ? `Region combinations with ${R.acronym[r]} among the searched links: ` +
        links.map((l) => `${D.patterns.names[l[0]]}: ${l[1]} (r ${l[2]})`).join("; ")
      : `${R.acronym[r]} is in none of the top region combinations of the patterns.`;
    return div;
  }

  function centreOn(r) {  // every plane's slice through the region's centre of mass
    const sum = [0, 0, 0];
    let n = 0;
    for (let a = 0, flat = 0; a < NA; a++) {
      for (let d = 0; d < ND; d++) {
        for (let m = 0; m < NM; m++, flat++) {
          const lab = label(flat);
          if (lab >= 0 && S.regionMembers[lab]) { sum[0] += a; sum[1] += d; sum[2] += m; n++; }
        }
      }
    }
    if (!n) return;
    S.slice.coronal = Math.round(sum[0] / n);
    S.slice.horizontal = Math.round(sum[1] / n);
    S.slice.sagittal = Math.round(sum[2] / n);
    syncSlider();
  }

  // ---- controls --------------------------------------------------------------------------------
  function syncSlider() {
    const p = PLANES[S.plane], slider = $("av-slice");
    slider.max = String(p.n - 1);
    slider.value = String(S.slice[S.plane]);
  }

  function setPlane(plane) {
    S.plane = plane;
    for (const b of root.querySelectorAll("[data-plane]")) b.classList.toggle("av-on", b.dataset.plane === plane);
    syncSlider();
    redraw();
  }

  function wire() {
    const select = $("av-pattern");
    D.patterns.names.forEach((name, k) => select.add(new Option(name, String(k))));
    select.addEventListener("change", () => showPattern(Number(select.value)));
    for (const b of root.querySelectorAll("[data-plane]")) b.addEventListener("click", () => setPlane(b.dataset.plane));
    $("av-slice").addEventListener("input", () => { S.slice[S.plane] = Number($("av-slice").value); redraw(); });
    $("av-outline").addEventListener("change", () => { S.outline = $("av-outline").value; redraw(); });
    const genes = $("av-gene-list");
    for (const key of rowsOf.keys()) genes.append(new Option(D.genes.symbol[rowsOf.get(key)[0]]));
    $("av-gene").addEventListener("input", onGeneInput);
    $("av-gene-experiment").addEventListener("change", () => showGene(Number($("av-gene-experiment").value)));
    const regions = $("av-region-list");
    R.acronym.forEach((a, i) => regions.append(new Option(R.name[i], a)));
    $("av-region").addEventListener("input", onRegionInput);
    const patternName = () => D.patterns.names[S.pattern];
    hover($("av-main"), ZOOM, patternName, () => patternValue(S.pattern), () => D.patterns.max[S.pattern]);
    hover($("av-measured"), GENE_ZOOM, () => "measured", () => measured(S.gene), () => D.genes.scale[S.gene]);
    hover($("av-recon"), GENE_ZOOM, () => "reconstructed", () => reconstructed(S.gene),
          () => D.genes.scale[S.gene]);
  }

  async function start() {
    if (typeof DecompressionStream === "undefined") {
      $("av-status").textContent = "This browser cannot show the atlas view (it lacks DecompressionStream).";
      return;
    }
    A = await load();
    wire();
    drawColorbars();
    syncSlider();
    showPattern(0);
    $("av-status").textContent = "";
    root.dataset.zoom = String(ZOOM);
    root.dataset.geneZoom = String(GENE_ZOOM);
    root.dataset.margin = String(MARGIN);
    root.dataset.ready = "1";
  }

  start().catch((error) => {
    $("av-status").textContent = `The atlas view could not load: ${error}`;
    console.error(error);
  });
})();
