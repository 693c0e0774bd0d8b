// Shrinks a WebAssembly component by running Binaryen's wasm-opt on its core modules.
//
//   node tools/shrink-component.mjs <wasm-opt> <in.wasm> <out.wasm>
//
// wasm-opt reads core modules, not components, so this takes the component apart at its
// top-level sections, optimises each embedded core module (section id 1) on its own,
// and writes the component back with the new bytes and lengths. Everything else (the
// component's types, imports, exports, canonical functions, instances, custom sections)
// is copied byte for byte; wasm-opt keeps a module's imports and exports as they are, so
// the component's references into it stay valid. Why: rustc's `opt-level = "z"` with LTO
// still leaves about 15 % that wasm-opt -Oz removes, and the component's size is a
// feature at the edge (README, "Speed and size").
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [wasmOpt, input, output] = process.argv.slice(2);
if (!output) {
  console.error("usage: node tools/shrink-component.mjs <wasm-opt> <in.wasm> <out.wasm>");
  process.exit(2);
}

// The features rustc enables for wasm32-wasip2 (and nothing it does not).
const FEATURES = [
  "--enable-bulk-memory",
  "--enable-nontrapping-float-to-int",
  "--enable-sign-ext",
  "--enable-mutable-globals",
  "--enable-multivalue",
  "--enable-reference-types",
];
const COMPONENT_PREAMBLE = Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]);
const CORE_MODULE_SECTION = 1;

function readU32(bytes, at) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = bytes[at++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
    if (byte < 0x80) return [value, at];
    if (shift > 35) throw new Error("malformed LEB128 length");
  }
}

function writeU32(value) {
  const out = [];
  do {
    let byte = value & 0x7f;
    value = Math.floor(value / 128);
    if (value) byte |= 0x80;
    out.push(byte);
  } while (value);
  return Buffer.from(out);
}

const component = readFileSync(input);
if (!component.subarray(0, 8).equals(COMPONENT_PREAMBLE)) {
  throw new Error(`${input} is not a WebAssembly component`);
}
const work = mkdtempSync(join(tmpdir(), "shrink-"));
const parts = [COMPONENT_PREAMBLE];
let at = 8;
let modules = 0;
try {
  while (at < component.length) {
    const id = component[at];
    const [length, start] = readU32(component, at + 1);
    const payload = component.subarray(start, start + length);
    if (start + length > component.length) throw new Error("section runs past the end of the file");
    let body = payload;
    if (id === CORE_MODULE_SECTION) {
      const before = join(work, `module${modules}.wasm`);
      const after = join(work, `module${modules}.opt.wasm`);
      writeFileSync(before, payload);
      execFileSync(wasmOpt, ["-Oz", ...FEATURES, before, "-o", after], { stdio: "inherit" });
      body = readFileSync(after);
      // Never grow: a tiny shim module can come out larger.
      if (body.length >= payload.length) body = payload;
      modules++;
    }
    parts.push(Buffer.from([id]), writeU32(body.length), body);
    at = start + length;
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
const shrunk = Buffer.concat(parts);
writeFileSync(output, shrunk);
console.log(`shrink: ${component.length} -> ${shrunk.length} bytes (${modules} core modules through wasm-opt -Oz)`);
