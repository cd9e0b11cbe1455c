#!/usr/bin/env node
// Run an ONNX model in ONNX Runtime (CPU) on TensorProto .pb inputs and write
// its outputs as TensorProto .pb files.
//
//   node ort_run.js MODEL.onnx OUTDIR INPUT_0.pb [INPUT_1.pb ...]
//
// Inputs are matched to model inputs by the TensorProto name when it names a
// model input, otherwise by position. Outputs are written in the model's
// output order as OUTDIR/output_K.pb (dims, data_type, name, raw_data).
//
// Setup (once): cd testdata/gen && ONNXRUNTIME_NODE_INSTALL=skip npm ci
'use strict';

const fs = require('fs');
const path = require('path');

// ---------------------------------------------------------------------------
// TensorProto data types (onnx.proto) and their ORT / typed-array equivalents
// ---------------------------------------------------------------------------

const DT = {
  1: { ort: 'float32', arr: Float32Array, name: 'FLOAT' },
  2: { ort: 'uint8', arr: Uint8Array, name: 'UINT8' },
  3: { ort: 'int8', arr: Int8Array, name: 'INT8' },
  4: { ort: 'uint16', arr: Uint16Array, name: 'UINT16' },
  5: { ort: 'int16', arr: Int16Array, name: 'INT16' },
  6: { ort: 'int32', arr: Int32Array, name: 'INT32' },
  7: { ort: 'int64', arr: BigInt64Array, name: 'INT64' },
  8: { ort: 'string', arr: null, name: 'STRING' },
  9: { ort: 'bool', arr: Uint8Array, name: 'BOOL' },
  10: { ort: 'float16', arr: Uint16Array, name: 'FLOAT16' },
  11: { ort: 'float64', arr: Float64Array, name: 'DOUBLE' },
  12: { ort: 'uint32', arr: Uint32Array, name: 'UINT32' },
  13: { ort: 'uint64', arr: BigUint64Array, name: 'UINT64' },
};
const ORT_TO_DT = {};
for (const [k, v] of Object.entries(DT)) ORT_TO_DT[v.ort] = Number(k);

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error('ort_run.js assumes a little-endian host');
}

// ---------------------------------------------------------------------------
// Minimal protobuf reader
// ---------------------------------------------------------------------------

class Reader {
  constructor(buf) {
    this.buf = buf;
    this.pos = 0;
  }
  eof() {
    return this.pos >= this.buf.length;
  }
  // Unsigned varint as BigInt (up to 64 bits).
  varint() {
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw new Error('truncated varint');
      const b = this.buf[this.pos++];
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return BigInt.asUintN(64, result);
      shift += 7n;
    }
    throw new Error('varint too long');
  }
  bytes(n) {
    if (n < 0 || this.pos + n > this.buf.length) throw new Error('truncated field');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  lenDelimited() {
    return this.bytes(Number(this.varint()));
  }
  skip(wire) {
    switch (wire) {
      case 0: this.varint(); break;
      case 1: this.bytes(8); break;
      case 2: this.lenDelimited(); break;
      case 5: this.bytes(4); break;
      default: throw new Error(`unsupported wire type ${wire}`);
    }
  }
}

const asInt64 = (u) => BigInt.asIntN(64, u);

// Repeated varint field: accepts packed (wire 2) and unpacked (wire 0).
function readVarints(r, wire, out) {
  if (wire === 0) {
    out.push(r.varint());
  } else if (wire === 2) {
    const sub = new Reader(r.lenDelimited());
    while (!sub.eof()) out.push(sub.varint());
  } else {
    throw new Error(`bad wire type ${wire} for varint field`);
  }
}

// Repeated fixed-width field (float: 4 bytes / wire 5, double: 8 bytes / wire 1).
function readFixed(r, wire, width, out) {
  const single = width === 4 ? 5 : 1;
  let bytes;
  if (wire === single) bytes = r.bytes(width);
  else if (wire === 2) bytes = r.lenDelimited();
  else throw new Error(`bad wire type ${wire} for fixed${width * 8} field`);
  if (bytes.length % width !== 0) throw new Error('packed fixed field length not a multiple of element size');
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let off = 0; off < bytes.length; off += width) {
    out.push(width === 4 ? dv.getFloat32(off, true) : dv.getFloat64(off, true));
  }
}

function decodeTensorProto(buf) {
  const r = new Reader(buf);
  const t = {
    dims: [], dataType: 0, name: '', raw: null,
    floatData: [], int32Data: [], stringData: [], int64Data: [], doubleData: [], uint64Data: [],
    external: false,
  };
  while (!r.eof()) {
    const key = Number(r.varint());
    const field = key >>> 3;
    const wire = key & 7;
    switch (field) {
      case 1: { const v = []; readVarints(r, wire, v); for (const x of v) t.dims.push(Number(asInt64(x))); break; }
      case 2: if (wire !== 0) throw new Error('bad data_type'); t.dataType = Number(r.varint()); break;
      case 4: readFixed(r, wire, 4, t.floatData); break;
      case 5: readVarints(r, wire, t.int32Data); break;
      case 6: if (wire !== 2) throw new Error('bad string_data'); t.stringData.push(Buffer.from(r.lenDelimited()).toString('utf8')); break;
      case 7: readVarints(r, wire, t.int64Data); break;
      case 8: if (wire !== 2) throw new Error('bad name'); t.name = Buffer.from(r.lenDelimited()).toString('utf8'); break;
      case 9: if (wire !== 2) throw new Error('bad raw_data'); t.raw = Buffer.from(r.lenDelimited()); break;
      case 10: readFixed(r, wire, 8, t.doubleData); break;
      case 11: readVarints(r, wire, t.uint64Data); break;
      case 13: t.external = true; r.skip(wire); break;
      case 14: { const loc = Number(r.varint()); if (loc === 1) t.external = true; break; }
      default: r.skip(wire); // segment (3), doc_string (12), metadata, ...
    }
  }
  return t;
}

// Build an ORT tensor from a decoded TensorProto.
function toOrtTensor(ort, t, file) {
  const dt = DT[t.dataType];
  if (!dt) throw new Error(`${file}: unsupported TensorProto data_type ${t.dataType}`);
  if (t.external) throw new Error(`${file}: external data is not supported`);
  const count = t.dims.reduce((a, b) => a * b, 1);
  let data;
  if (dt.ort === 'string') {
    data = t.stringData;
  } else if (t.raw !== null) {
    const size = dt.arr.BYTES_PER_ELEMENT;
    if (t.raw.length !== count * size) {
      throw new Error(`${file}: raw_data has ${t.raw.length} bytes, want ${count} x ${size}`);
    }
    // Copy into a fresh, aligned buffer.
    const ab = new ArrayBuffer(t.raw.length);
    new Uint8Array(ab).set(t.raw);
    data = new dt.arr(ab);
  } else {
    let src;
    switch (t.dataType) {
      case 1: src = t.floatData; break;
      case 11: src = t.doubleData; break;
      case 7: src = t.int64Data.map(asInt64); break;
      case 13: src = t.uint64Data; break;
      case 12: src = t.uint64Data.map(Number); break;
      case 2: case 3: case 4: case 5: case 6: case 9: case 10:
        // int32_data holds int32, int16, int8, uint16, uint8, bool and float16 bits.
        src = t.int32Data.map((x) => Number(BigInt.asIntN(32, x))); break;
      default: throw new Error(`${file}: no typed field for data_type ${t.dataType}`);
    }
    if (src.length !== count) {
      throw new Error(`${file}: ${src.length} elements for dims [${t.dims}] (${count})`);
    }
    data = dt.arr.from(src);
  }
  return new ort.Tensor(dt.ort, data, t.dims);
}

// ---------------------------------------------------------------------------
// Minimal protobuf writer
// ---------------------------------------------------------------------------

function encodeVarint(v, out) {
  let u = BigInt.asUintN(64, BigInt(v));
  do {
    let b = Number(u & 0x7fn);
    u >>= 7n;
    if (u !== 0n) b |= 0x80;
    out.push(b);
  } while (u !== 0n);
}

function encodeTensorProto(name, tensor) {
  const dataType = ORT_TO_DT[tensor.type];
  if (!dataType) throw new Error(`output ${name}: unsupported ORT type ${tensor.type}`);
  const head = [];
  for (const d of tensor.dims) { head.push(0x08); encodeVarint(d, head); } // 1: dims (unpacked, as proto2)
  head.push(0x10); encodeVarint(dataType, head); // 2: data_type
  const nameBytes = Buffer.from(name, 'utf8');
  head.push(0x42); encodeVarint(nameBytes.length, head); // 8: name
  const parts = [Buffer.from(head), nameBytes];
  if (tensor.type === 'string') {
    for (const s of tensor.data) { // 6: string_data
      const b = Buffer.from(String(s), 'utf8');
      const h = [0x32]; encodeVarint(b.length, h);
      parts.push(Buffer.from(h), b);
    }
  } else {
    const d = tensor.data;
    const raw = Buffer.from(d.buffer, d.byteOffset, d.byteLength);
    const h = [0x4a]; encodeVarint(raw.length, h); // 9: raw_data
    parts.push(Buffer.from(h), raw);
  }
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

function loadOrt() {
  try {
    return require('onnxruntime-node');
  } catch (e) {
    throw new Error(`cannot load onnxruntime-node (${e.message}); run: cd ${__dirname} && ONNXRUNTIME_NODE_INSTALL=skip npm ci`);
  }
}

async function main(argv) {
  if (argv.length < 3 || argv[0] === '-h' || argv[0] === '--help') {
    console.error('usage: node ort_run.js MODEL.onnx OUTDIR INPUT_0.pb [INPUT_1.pb ...]');
    return 2;
  }
  const [modelPath, outDir, ...inputFiles] = argv;
  const ort = loadOrt();

  const session = await ort.InferenceSession.create(modelPath, {
    executionProviders: ['cpu'],
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
  });
  const inNames = session.inputNames;
  if (inputFiles.length > inNames.length) {
    throw new Error(`${inputFiles.length} input files but the model has ${inNames.length} inputs (${inNames.join(', ')})`);
  }

  const feeds = {};
  inputFiles.forEach((file, i) => {
    let t;
    try {
      t = decodeTensorProto(fs.readFileSync(file));
    } catch (e) {
      throw new Error(`${file}: cannot decode TensorProto: ${e.message}`);
    }
    const target = inNames.includes(t.name) ? t.name : inNames[i];
    if (target in feeds) throw new Error(`${file}: model input "${target}" is fed twice`);
    feeds[target] = toOrtTensor(ort, t, file);
  });
  const missing = inNames.filter((n) => !(n in feeds));
  if (missing.length) throw new Error(`no data for model input(s): ${missing.join(', ')}`);

  const results = await session.run(feeds);
  fs.mkdirSync(outDir, { recursive: true });
  session.outputNames.forEach((name, k) => {
    const t = results[name];
    if (!t) throw new Error(`ORT returned no value for output ${name}`);
    fs.writeFileSync(path.join(outDir, `output_${k}.pb`), encodeTensorProto(name, t));
    console.log(`output_${k} ${name} ${t.type} [${t.dims.join(',')}]`);
  });
  if (typeof session.release === 'function') await session.release();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`ort_run: error: ${err && err.message ? err.message : err}`);
    process.exit(1);
  },
);
