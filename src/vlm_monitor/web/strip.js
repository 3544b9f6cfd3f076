// Reads the test camera's timestamp strip (camera/strip.py) from a picture on the page, for
// glass-to-glass latency of whatever view is shown (MJPEG <img> or WebRTC <video>).
"use strict";

const STRIP_BITS = 96;
const STRIP_PREAMBLE = 0b10110010;
const stripCanvas = document.createElement("canvas");

function crc8(bytes) {
  let crc = 0;
  for (const b of bytes) {
    crc ^= b;
    for (let i = 0; i < 8; i++) crc = crc & 0x80 ? ((crc << 1) ^ 0x07) & 0xff : (crc << 1) & 0xff;
  }
  return crc;
}

// {seq, ts (ms since epoch)} or null; `el` is an <img> or <video> at any display size.
function readStrip(el) {
  const width = el.naturalWidth || el.videoWidth;
  const height = el.naturalHeight || el.videoHeight;
  if (!width || !height) return null;
  const block = Math.max(8, Math.floor(width / 80));
  const perRow = Math.floor(width / block);
  const rows = Math.ceil(STRIP_BITS / perRow) * block;
  if (height < rows) return null;
  stripCanvas.width = width;
  stripCanvas.height = rows;
  const ctx = stripCanvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(el, 0, 0, width, rows, 0, 0, width, rows);
  const px = ctx.getImageData(0, 0, width, rows).data;
  const bytes = new Uint8Array(STRIP_BITS / 8);
  for (let i = 0; i < STRIP_BITS; i++) {
    const y = Math.floor(i / perRow) * block + (block >> 1);
    const x = (i % perRow) * block + (block >> 1);
    const o = (y * width + x) * 4;
    if ((px[o] + px[o + 1] + px[o + 2]) / 3 > 127) bytes[i >> 3] |= 0x80 >> (i & 7);
  }
  if (bytes[0] !== STRIP_PREAMBLE || crc8(bytes.subarray(1, 11)) !== bytes[11]) return null;
  let seq = 0;
  for (let i = 1; i < 5; i++) seq = seq * 256 + bytes[i];
  let ms = 0;
  for (let i = 5; i < 11; i++) ms = ms * 256 + bytes[i];
  return { seq, ts: ms };
}
