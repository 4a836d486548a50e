"use strict";
// QrCode: a QR code encoder (ISO/IEC 18004 Model 2, byte mode, no ECI), written from the
// standard so the "New device" page can draw a WireGuard profile, private key included, without
// the key ever leaving the browser. It defines one global:
//
//   QrCode.encode(text, level = "M") -> { version, level, mask, size, modules }
//       text is encoded as UTF-8; level is "L", "M", "Q" or "H"; the smallest version 1..40
//       that holds the bytes is used; modules[y][x] is true for a dark module.
//   QrCode.draw(canvas, qr, { scale = 4, margin = 4 })
//       draws the code on a <canvas>, black on white, `margin` modules of quiet zone.
//
// Coordinates below are x = column, y = row, both from the top-left corner.
(function () {
  const LEVELS = ["L", "M", "Q", "H"];
  // The format information's error correction level indicator: L 01, M 00, Q 11, H 10.
  const LEVEL_BITS = [0b01, 0b00, 0b11, 0b10];

  // Error correction codewords per block, for versions 1..40, one row per level L, M, Q, H.
  const EC_PER_BLOCK = [
    [7, 10, 15, 20, 26, 18, 20, 24, 30, 18, 20, 24, 26, 30, 22, 24, 28, 30, 28, 28,
      28, 28, 30, 30, 26, 28, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30],
    [10, 16, 26, 18, 24, 16, 18, 22, 22, 26, 30, 22, 22, 24, 24, 28, 28, 26, 26, 26,
      26, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28],
    [13, 22, 18, 26, 18, 24, 18, 22, 20, 24, 28, 26, 24, 20, 30, 24, 28, 28, 26, 30,
      28, 30, 30, 30, 30, 28, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30],
    [17, 28, 22, 16, 22, 28, 26, 26, 24, 28, 24, 28, 22, 24, 24, 30, 28, 28, 26, 28,
      30, 24, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30],
  ];
  // Error correction blocks, for versions 1..40, one row per level L, M, Q, H.
  const BLOCKS = [
    [1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 4, 4, 6, 6, 6, 6, 7, 8,
      8, 9, 9, 10, 12, 12, 12, 13, 14, 15, 16, 17, 18, 19, 19, 20, 21, 22, 24, 25],
    [1, 1, 1, 2, 2, 4, 4, 4, 5, 5, 5, 8, 9, 9, 10, 10, 11, 13, 14, 16,
      17, 17, 18, 20, 21, 23, 25, 26, 28, 29, 31, 33, 35, 37, 38, 40, 43, 45, 47, 49],
    [1, 1, 2, 2, 4, 4, 6, 6, 8, 8, 8, 10, 12, 16, 12, 17, 16, 18, 21, 20,
      23, 23, 25, 27, 29, 34, 34, 35, 38, 40, 43, 45, 48, 51, 53, 56, 59, 62, 65, 68],
    [1, 1, 2, 4, 4, 4, 5, 6, 8, 8, 11, 11, 16, 16, 18, 16, 19, 21, 25, 25,
      25, 34, 30, 32, 35, 37, 40, 42, 45, 48, 51, 54, 57, 60, 63, 66, 70, 74, 77, 81],
  ];
  // Row/column coordinates of alignment pattern centres, indexed by version (none in version 1).
  const ALIGN = [[], [],
    [6, 18], [6, 22], [6, 26], [6, 30], [6, 34],
    [6, 22, 38], [6, 24, 42], [6, 26, 46], [6, 28, 50], [6, 30, 54], [6, 32, 58], [6, 34, 62],
    [6, 26, 46, 66], [6, 26, 48, 70], [6, 26, 50, 74], [6, 30, 54, 78], [6, 30, 56, 82],
    [6, 30, 58, 86], [6, 34, 62, 90],
    [6, 28, 50, 72, 94], [6, 26, 50, 74, 98], [6, 30, 54, 78, 102], [6, 28, 54, 80, 106],
    [6, 32, 58, 84, 110], [6, 30, 58, 86, 114], [6, 34, 62, 90, 118],
    [6, 26, 50, 74, 98, 122], [6, 30, 54, 78, 102, 126], [6, 26, 52, 78, 104, 130],
    [6, 30, 56, 82, 108, 134], [6, 34, 60, 86, 112, 138], [6, 30, 58, 86, 114, 142],
    [6, 34, 62, 90, 118, 146],
    [6, 30, 54, 78, 102, 126, 150], [6, 24, 50, 76, 102, 128, 154], [6, 28, 54, 80, 106, 132, 158],
    [6, 32, 58, 84, 110, 136, 162], [6, 26, 54, 82, 110, 138, 166], [6, 30, 58, 86, 114, 142, 170],
  ];

  // --- Capacity: how many codewords a version has, how many of them carry data. ---

  const sizeOf = (version) => 4 * version + 17;
  const countBits = (version) => (version < 10 ? 8 : 16);

  // Modules left for codewords: the whole square minus finders with separators (3 x 8 x 8),
  // timing patterns, format information with the dark module (31), alignment patterns (less
  // the timing modules they cover) and the two version information blocks (2 x 18).
  function totalCodewords(version) {
    const size = sizeOf(version);
    let modules = size * size - 3 * 64 - 2 * (size - 16) - 31;
    if (version >= 2) {
      const n = ALIGN[version].length;
      modules -= 25 * (n * n - 3) - 10 * (n - 2);
    }
    if (version >= 7) modules -= 36;
    return Math.floor(modules / 8);
  }

  const dataCodewords = (version, lv) =>
    totalCodewords(version) - EC_PER_BLOCK[lv][version - 1] * BLOCKS[lv][version - 1];
  const capacity = (version, lv) =>
    Math.floor((8 * dataCodewords(version, lv) - 4 - countBits(version)) / 8);

  // --- Data bits: mode 0100, byte count, the bytes, terminator, zero bits, pad codewords. ---

  function dataBytes(bytes, version, lv) {
    const bits = [];
    const push = (value, length) => {
      for (let i = length - 1; i >= 0; i--) bits.push((value >>> i) & 1);
    };
    const room = 8 * dataCodewords(version, lv);
    push(0b0100, 4);
    push(bytes.length, countBits(version));
    bytes.forEach((b) => push(b, 8));
    push(0, Math.min(4, room - bits.length));
    push(0, (8 - (bits.length % 8)) % 8);
    const out = [];
    for (let i = 0; i < bits.length; i += 8) {
      out.push(bits.slice(i, i + 8).reduce((acc, bit) => (acc << 1) | bit, 0));
    }
    for (let pad = 0xec; out.length < room / 8; pad ^= 0xec ^ 0x11) out.push(pad);
    return out;
  }

  // --- Reed-Solomon codewords over GF(256), field polynomial x^8+x^4+x^3+x^2+1 (0x11d). ---

  const EXP = new Uint8Array(512);
  const LOG = new Uint8Array(256);
  for (let i = 0, x = 1; i < 255; i++) {
    EXP[i] = x;
    LOG[x] = i;
    x = (x << 1) ^ (x & 0x80 ? 0x11d : 0);
  }
  for (let i = 255; i < 512; i++) EXP[i] = EXP[i - 255];
  const mul = (a, b) => (a && b ? EXP[LOG[a] + LOG[b]] : 0);

  // The generator polynomial (x - a^0)(x - a^1)...(x - a^(n-1)), highest power first.
  const generators = new Map();
  function generator(n) {
    if (!generators.has(n)) {
      let g = [1];
      for (let i = 0; i < n; i++) {
        const next = g.concat(0);
        g.forEach((c, j) => { next[j + 1] ^= mul(c, EXP[i]); });
        g = next;
      }
      generators.set(n, g);
    }
    return generators.get(n);
  }

  // The remainder of data(x) * x^n divided by the generator: the block's n EC codewords.
  function ecCodewords(data, n) {
    const g = generator(n);
    const rem = new Array(n).fill(0);
    for (const byte of data) {
      const factor = byte ^ rem.shift();
      rem.push(0);
      for (let i = 0; i < n; i++) rem[i] ^= mul(g[i + 1], factor);
    }
    return rem;
  }

  // --- Interleave: split data into blocks (short ones first), then take the data codewords
  // one from each block in turn, then the EC codewords likewise. ---

  function interleave(data, version, lv) {
    const nBlocks = BLOCKS[lv][version - 1];
    const ecLen = EC_PER_BLOCK[lv][version - 1];
    const total = totalCodewords(version);
    const shortLen = Math.floor(total / nBlocks) - ecLen;
    const firstLong = nBlocks - (total % nBlocks);
    const blocks = [];
    for (let b = 0, at = 0; b < nBlocks; b++) {
      const part = data.slice(at, (at += shortLen + (b >= firstLong ? 1 : 0)));
      blocks.push({ data: part, ec: ecCodewords(part, ecLen) });
    }
    const out = [];
    for (let i = 0; i <= shortLen; i++) {
      blocks.forEach((bl) => { if (i < bl.data.length) out.push(bl.data[i]); });
    }
    for (let i = 0; i < ecLen; i++) blocks.forEach((bl) => out.push(bl.ec[i]));
    return out;
  }

  // --- Format and version information: BCH codes computed here. ---

  // data followed by the remainder of data * x^deg(poly) divided by poly, over GF(2).
  function bch(data, poly) {
    const deg = 31 - Math.clz32(poly);
    let rem = data << deg;
    while (31 - Math.clz32(rem) >= deg) rem ^= poly << (31 - Math.clz32(rem) - deg);
    return (data << deg) | rem;
  }

  // 15 bits: level and mask, BCH(15,5) with x^10+x^8+x^5+x^4+x^2+x+1, XOR 101010000010010.
  function drawFormat(m, lv, mask) {
    const bits = bch((LEVEL_BITS[lv] << 3) | mask, 0x537) ^ 0x5412;
    const size = m.dark.length;
    for (let i = 0; i < 15; i++) {
      const on = ((bits >>> i) & 1) === 1;
      // Around the top-left finder: down column 8 (skipping the timing row), then left along row 8.
      if (i < 8) m.set(8, i < 6 ? i : i + 1, on);
      else m.set(i < 9 ? 7 : 14 - i, 8, on);
      // The copy: right to left along row 8 under the top-right finder, then down column 8.
      if (i < 8) m.set(size - 1 - i, 8, on);
      else m.set(8, size - 15 + i, on);
    }
    m.set(8, size - 8, true); // the dark module
  }

  // 18 bits from version 7: the version, BCH(18,6) with x^12+x^11+x^10+x^9+x^8+x^5+x^2+1.
  function drawVersion(m, version) {
    if (version < 7) return;
    const bits = bch(version, 0x1f25);
    const size = m.dark.length;
    for (let i = 0; i < 18; i++) {
      const on = ((bits >>> i) & 1) === 1;
      const a = size - 11 + (i % 3);
      const b = Math.floor(i / 3);
      m.set(b, a, on); // 6 wide x 3 high, above the bottom-left finder
      m.set(a, b, on); // 3 wide x 6 high, left of the top-right finder
    }
  }

  // --- Function patterns: finders, separators, alignment, timing, reserved format areas. ---

  function functionPatterns(version) {
    const size = sizeOf(version);
    const grid = () => Array.from({ length: size }, () => new Array(size).fill(false));
    const m = { dark: grid(), fn: grid() };
    m.set = (x, y, on) => {
      m.dark[y][x] = on;
      m.fn[y][x] = true;
    };
    // Finders (7x7 rings: dark, light, 3x3 dark) with a light separator, in three corners.
    for (const [cx, cy] of [[3, 3], [size - 4, 3], [3, size - 4]]) {
      for (let dy = -4; dy <= 4; dy++) {
        for (let dx = -4; dx <= 4; dx++) {
          const [x, y] = [cx + dx, cy + dy];
          const ring = Math.max(Math.abs(dx), Math.abs(dy));
          if (x >= 0 && y >= 0 && x < size && y < size) m.set(x, y, ring !== 2 && ring !== 4);
        }
      }
    }
    // Alignment patterns (5x5: dark ring, light ring, dark centre) where no finder is.
    for (const cy of ALIGN[version]) {
      for (const cx of ALIGN[version]) {
        if (m.fn[cy][cx]) continue;
        for (let dy = -2; dy <= 2; dy++) {
          for (let dx = -2; dx <= 2; dx++) {
            m.set(cx + dx, cy + dy, Math.max(Math.abs(dx), Math.abs(dy)) !== 1);
          }
        }
      }
    }
    // Timing patterns along row 6 and column 6, dark on even coordinates.
    for (let i = 0; i < size; i++) {
      if (!m.fn[6][i]) m.set(i, 6, i % 2 === 0);
      if (!m.fn[i][6]) m.set(6, i, i % 2 === 0);
    }
    drawFormat(m, 0, 0); // reserves the areas; redrawn once the mask is chosen
    drawVersion(m, version);
    return m;
  }

  // --- Data placement: two-module columns from the right, upward then downward in turn,
  // skipping the vertical timing pattern and every function module. ---

  function placeData(m, codewords) {
    const size = m.dark.length;
    let bit = 0;
    let upward = true;
    for (let right = size - 1; right >= 1; right -= 2) {
      if (right === 6) right = 5;
      for (let k = 0; k < size; k++) {
        const y = upward ? size - 1 - k : k;
        for (const x of [right, right - 1]) {
          if (m.fn[y][x]) continue;
          const byte = codewords[bit >>> 3];
          m.dark[y][x] = byte !== undefined && ((byte >>> (7 - (bit & 7))) & 1) === 1;
          bit++;
        }
      }
      upward = !upward;
    }
  }

  // --- Masks and the penalty that picks one. i is the row, j the column. ---

  const MASKS = [
    (i, j) => (i + j) % 2 === 0,
    (i) => i % 2 === 0,
    (i, j) => j % 3 === 0,
    (i, j) => (i + j) % 3 === 0,
    (i, j) => (Math.floor(i / 2) + Math.floor(j / 3)) % 2 === 0,
    (i, j) => ((i * j) % 2) + ((i * j) % 3) === 0,
    (i, j) => (((i * j) % 2) + ((i * j) % 3)) % 2 === 0,
    (i, j) => (((i + j) % 2) + ((i * j) % 3)) % 2 === 0,
  ];

  // A copy of m with data modules flipped where the mask says, and its format information.
  function applyMask(m, mask, lv) {
    const out = { dark: m.dark.map((row) => row.slice()), fn: m.fn };
    out.set = (x, y, on) => { out.dark[y][x] = on; };
    out.dark.forEach((row, i) => row.forEach((on, j) => {
      if (!m.fn[i][j] && MASKS[mask](i, j)) row[j] = !on;
    }));
    drawFormat(out, lv, mask);
    return out.dark;
  }

  const FINDER_LIKE = [true, false, true, true, true, false, true];

  // Rules 1 and 3 along one row or column.
  function linePenalty(line) {
    let score = 0;
    // Rule 1: a run of n >= 5 modules of one colour costs 3 + (n - 5).
    for (let i = 1, run = 1; i <= line.length; i++) {
      if (i < line.length && line[i] === line[i - 1]) {
        run++;
      } else {
        if (run >= 5) score += run - 2;
        run = 1;
      }
    }
    // Rule 3: dark-light-dark-dark-dark-light-dark with 4 light modules before or after (past
    // the edge counts as light, the quiet zone): 40 for each side that has them.
    const light4 = (from) => [0, 1, 2, 3].every((k) => !line[from + k]);
    for (let s = 0; s + 7 <= line.length; s++) {
      if (!FINDER_LIKE.every((c, k) => line[s + k] === c)) continue;
      if (light4(s - 4)) score += 40;
      if (light4(s + 7)) score += 40;
    }
    return score;
  }

  function penalty(dark) {
    const size = dark.length;
    let score = 0;
    for (let i = 0; i < size; i++) {
      score += linePenalty(dark[i]) + linePenalty(dark.map((row) => row[i]));
    }
    // Rule 2: 3 for every 2x2 block of one colour (overlaps counted).
    for (let y = 0; y + 1 < size; y++) {
      for (let x = 0; x + 1 < size; x++) {
        const c = dark[y][x];
        if (c === dark[y][x + 1] && c === dark[y + 1][x] && c === dark[y + 1][x + 1]) score += 3;
      }
    }
    // Rule 4: 10 for every full 5% the dark share is away from 50%.
    const darkCount = dark.reduce((n, row) => n + row.filter(Boolean).length, 0);
    score += 10 * Math.floor(Math.abs(20 * darkCount - 10 * size * size) / (size * size));
    return score;
  }

  // --- The API. ---

  function encode(text, level = "M") {
    if (typeof text !== "string") throw new TypeError("QrCode.encode: text must be a string");
    const lv = LEVELS.indexOf(level);
    if (lv < 0) {
      throw new RangeError(`QrCode.encode: level must be L, M, Q or H, not ${String(level)}`);
    }
    const bytes = Array.from(new TextEncoder().encode(text));
    let version = 1;
    while (version <= 40 && capacity(version, lv) < bytes.length) version++;
    if (version > 40) {
      throw new RangeError(`QrCode.encode: ${bytes.length} bytes do not fit in a QR code at ` +
        `level ${level} (version 40 holds at most ${capacity(40, lv)} bytes)`);
    }
    const m = functionPatterns(version);
    placeData(m, interleave(dataBytes(bytes, version, lv), version, lv));
    let best = null;
    for (let mask = 0; mask < 8; mask++) {
      const modules = applyMask(m, mask, lv);
      const score = penalty(modules);
      if (best === null || score < best.score) best = { mask, modules, score };
    }
    return { version, level, mask: best.mask, size: sizeOf(version), modules: best.modules };
  }

  function draw(canvas, qr, { scale = 4, margin = 4 } = {}) {
    const s = Math.max(1, Math.floor(scale));
    const side = (qr.size + 2 * margin) * s;
    canvas.width = side;
    canvas.height = side;
    canvas.style.imageRendering = "pixelated";
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, side, side);
    ctx.fillStyle = "#000";
    qr.modules.forEach((row, y) => row.forEach((on, x) => {
      if (on) ctx.fillRect((x + margin) * s, (y + margin) * s, s, s);
    }));
  }

  window.QrCode = Object.freeze({ encode, draw });
})();
